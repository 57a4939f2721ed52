-- One database per service: each service owns its tables and migrates them at start.
CREATE DATABASE thidua_plans OWNER thidua;
CREATE DATABASE thidua_reporting OWNER thidua;
CREATE DATABASE thidua_notifications OWNER thidua;
CREATE DATABASE thidua_awards OWNER thidua;
