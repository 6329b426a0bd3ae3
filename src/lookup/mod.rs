//! The IP-to-environment lookup client (DESIGN.md, "The lookup client").
//! STUB: filled in by the lookup work.
