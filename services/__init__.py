"""The four thidua services and the runtime that hosts them."""
