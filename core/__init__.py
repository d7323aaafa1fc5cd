"""The bottom layer: settings, the engine and session plumbing, and the long-lived resources built
from them. Nothing here imports the product's other packages (tests/test_layers.py checks it)."""
