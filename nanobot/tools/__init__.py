"""Tools the model can call: files, exec, web, message."""
