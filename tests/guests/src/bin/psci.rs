//! The psci test guest: see `asm/psci.S`.

#![no_std]
#![no_main]

use armature_test_guests as _;

armature_test_guests::guest!("psci");
