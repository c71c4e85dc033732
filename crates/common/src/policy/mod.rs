//! oslo.policy-compatible rule engine (filled in by its own change).
