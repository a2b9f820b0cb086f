"""The artisan marketplace's thin Python layer over the PL/pgSQL api schema."""
__version__ = "0.1.0"
