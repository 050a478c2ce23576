"""Tools the model can call: files (read/write/edit/list) and exec."""
