//! Fernet tokens in Keystone's format (filled in by its own change).
