//! Decoding the exception syndrome (AArch64 `ESR_ELx`, AArch32 `HSR`: both use
//! the same exception-class encoding in bits [31:26]).

/// Exception class, IL and ISS of a syndrome value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syndrome {
    /// The raw value.
    pub raw: u64,
    /// Exception class, bits [31:26].
    pub ec: u8,
    /// Instruction length bit (1 = 32-bit instruction).
    pub il: bool,
    /// Instruction-specific syndrome, bits [24:0].
    pub iss: u32,
}

impl Syndrome {
    /// Splits a syndrome register value.
    pub fn new(raw: u64) -> Self {
        Self {
            raw,
            ec: ((raw >> 26) & 0x3f) as u8,
            il: (raw >> 25) & 1 == 1,
            iss: (raw & 0x1ff_ffff) as u32,
        }
    }

    /// Human-readable exception class.
    pub fn class_name(&self) -> &'static str {
        ec_name(self.ec)
    }

    /// True for instruction or data aborts, whose ISS holds a fault status code.
    pub fn is_abort(&self) -> bool {
        matches!(self.ec, 0x20 | 0x21 | 0x24 | 0x25)
    }

    /// True for data aborts (ISS has WnR).
    pub fn is_data_abort(&self) -> bool {
        matches!(self.ec, 0x24 | 0x25)
    }

    /// Fault status code (DFSC/IFSC), for aborts.
    pub fn fault_status(&self) -> u8 {
        (self.iss & 0x3f) as u8
    }

    /// Write-not-read, for data aborts.
    pub fn is_write(&self) -> bool {
        self.iss & (1 << 6) != 0
    }

    /// The 16-bit immediate of `brk`/`hvc`/`smc`/`svc`.
    pub fn imm16(&self) -> u16 {
        self.iss as u16
    }
}

/// Name of an exception class (Arm ARM D17.2.37, ESR_ELx.EC).
pub fn ec_name(ec: u8) -> &'static str {
    match ec {
        0x00 => "Unknown reason (undefined instruction)",
        0x01 => "Trapped WFI/WFE",
        0x03 => "Trapped MCR/MRC (cp15)",
        0x04 => "Trapped MCRR/MRRC (cp15)",
        0x05 => "Trapped MCR/MRC (cp14)",
        0x06 => "Trapped LDC/STC (cp14)",
        0x07 => "Trapped SVE/SIMD/FP access",
        0x0c => "Trapped MRRC (cp14)",
        0x0e => "Illegal execution state",
        0x11 => "SVC from AArch32",
        0x12 => "HVC from AArch32",
        0x13 => "SMC from AArch32",
        0x15 => "SVC from AArch64",
        0x16 => "HVC from AArch64",
        0x17 => "SMC from AArch64",
        0x18 => "Trapped MSR/MRS/system instruction",
        0x19 => "Trapped SVE access",
        0x1f => "IMPLEMENTATION DEFINED exception to EL3",
        0x20 => "Instruction Abort from a lower EL",
        0x21 => "Instruction Abort from the current EL",
        0x22 => "PC alignment fault",
        0x24 => "Data Abort from a lower EL",
        0x25 => "Data Abort from the current EL",
        0x26 => "SP alignment fault",
        0x28 => "Trapped FP exception (AArch32)",
        0x2c => "Trapped FP exception (AArch64)",
        0x2f => "SError interrupt",
        0x30 => "Breakpoint from a lower EL",
        0x31 => "Breakpoint from the current EL",
        0x32 => "Software step from a lower EL",
        0x33 => "Software step from the current EL",
        0x34 => "Watchpoint from a lower EL",
        0x35 => "Watchpoint from the current EL",
        0x38 => "BKPT (AArch32)",
        0x3c => "BRK instruction (AArch64)",
        _ => "Reserved exception class",
    }
}

/// Name of a data/instruction fault status code (DFSC/IFSC, long-descriptor format).
pub fn fault_status_name(fsc: u8) -> &'static str {
    match fsc {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x11 => "synchronous tag check fault",
        0x14..=0x17 => "synchronous external abort on table walk",
        0x18 => "synchronous parity/ECC error",
        0x1c..=0x1f => "synchronous parity/ECC error on table walk",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        0x31 => "unsupported atomic hardware update",
        0x34 => "lockdown (IMPLEMENTATION DEFINED)",
        0x35 => "unsupported exclusive or atomic access",
        _ => "reserved fault status",
    }
}

/// The translation-table level a fault status refers to, where it has one.
pub fn fault_level(fsc: u8) -> Option<u8> {
    match fsc {
        0x00..=0x0f | 0x14..=0x17 | 0x1c..=0x1f => Some(fsc & 3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_abort_from_current_el() {
        // Read of an unmapped address at EL2 with the MMU off: external abort.
        let s = Syndrome::new(0x9600_0010);
        assert_eq!(s.ec, 0x25);
        assert!(s.il);
        assert!(s.is_data_abort());
        assert!(!s.is_write());
        assert_eq!(s.class_name(), "Data Abort from the current EL");
        assert_eq!(fault_status_name(s.fault_status()), "synchronous external abort");
        assert_eq!(fault_level(s.fault_status()), None);
    }

    #[test]
    fn write_translation_fault_level() {
        let s = Syndrome::new(0x9600_0046); // WnR, level-2 translation fault
        assert!(s.is_write());
        assert_eq!(fault_status_name(s.fault_status()), "translation fault");
        assert_eq!(fault_level(s.fault_status()), Some(2));
    }

    #[test]
    fn brk_and_undefined() {
        let s = Syndrome::new((0x3c << 26) | (1 << 25) | 0x0a55);
        assert_eq!(s.class_name(), "BRK instruction (AArch64)");
        assert_eq!(s.imm16(), crate::crash::PANIC_BRK_IMM);
        assert_eq!(Syndrome::new(0x0200_0000).class_name(), "Unknown reason (undefined instruction)");
        assert_eq!(ec_name(0x16), "HVC from AArch64");
        assert_eq!(ec_name(0x3f), "Reserved exception class");
    }
}
