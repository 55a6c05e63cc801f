"""kxl: the Kohaku XL Epsilon run, rebuilt as a declarative, auditable pipeline."""

__version__ = "0.1.0"
