//! ARMv7-A with the virtualization extensions: HYP mode (PL2).
//!
//! Placeholder until the ARMv7 port lands; see boot/armv7/.
