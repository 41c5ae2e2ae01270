//! The smp test guest: see `asm/smp.S`.

#![no_std]
#![no_main]

use armature_test_guests as _;

armature_test_guests::guest!("smp");
