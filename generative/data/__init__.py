"""Data that ships with the package or is generated on the fly; nothing is downloaded."""
