//! The irq test guest: see `asm/irq.S`.

#![no_std]
#![no_main]

use armature_test_guests as _;

armature_test_guests::guest!("irq");
