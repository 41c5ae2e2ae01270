//! The basic test guest: see `asm/basic.S`.

#![no_std]
#![no_main]

use armature_test_guests as _;

armature_test_guests::guest!("basic");
