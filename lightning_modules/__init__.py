"""LightningModules (one per training stage) and DataModules."""
