//! The vgic test guest: see `asm/vgic.S`.

#![no_std]
#![no_main]

use armature_test_guests as _;

armature_test_guests::guest!("vgic");
