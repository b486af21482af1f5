"""Slot contracts and the U-Net assembly, written once against a framework's ``ops``."""
