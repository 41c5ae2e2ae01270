//! Memory management: typed addresses and translation tables.
//!
//! This module owns the hypervisor's address types ([`addr`]: physical,
//! virtual and intermediate physical addresses, pages and block sizes) and
//! the LPAE translation-table library ([`lpae`]) that both AArch64 and ARMv7
//! build their hypervisor (and later stage-2) tables with. Everything here is
//! pure logic — no `asm!`, no system registers — so it runs unchanged on
//! the host, where its unit tests run, and on both targets; the arch code
//! supplies table memory and TLB/cache maintenance through traits.
//! It also owns physical memory: the boot-time page allocator ([`frames`]) and the kernel heap ([`heap`]).

pub mod addr;
pub mod bringup;
pub mod frames;
pub mod heap;
pub mod lpae;
pub mod placement;
pub mod pool;

pub use addr::{
    AddrKind, Address, AnyAddr, IntermediatePhysAddr, PAGE_SIZE, PageFrame, PageSize, PhysAddr, SIZE_1G, SIZE_2M,
    VirtAddr,
};
