//! The timer test guest: see `asm/timer.S`.

#![no_std]
#![no_main]

use armature_test_guests as _;

armature_test_guests::guest!("timer");
