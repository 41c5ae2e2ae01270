//! Host tests of the LPAE library. Every test builds tables over the fake
//! allocator, reads them back through the independent walker, replays the
//! recorded maintenance through the break-before-make checker and ends by
//! destroying the tables with a leak check (`support::finish`).

mod basic;
mod bbm;
mod boot;
mod early_boot;
mod random;
mod support;
