//! The two tutorials as library code, shared by the example programs, the demo and the tests:
//! [`sensor`] (windowed aggregation of temperature readings) and [`gps`] (per-track distances,
//! a database writer and the reprocessing rewind), [`enrich`] (readings joined with sensor
//! metadata before the windows). [`common`] holds what every program shares.

pub mod common;
pub mod enrich;
pub mod gps;
pub mod sensor;
