//! The message bus between the roles of a service (filled in by its own change).
