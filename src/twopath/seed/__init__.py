"""Reference models that twopath trains itself."""
