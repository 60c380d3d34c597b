"""Independent, deliberately plain reference implementations the adapters are checked against."""
