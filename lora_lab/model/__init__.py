"""Base models: built from config and pretrained on the world, or loaded from disk/hub."""
