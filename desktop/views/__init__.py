"""Widgets: they read models and call Store actions, and hold no engine state."""
