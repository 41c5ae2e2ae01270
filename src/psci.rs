//! PSCI: calls from the hypervisor to the firmware's Power State Coordination
//! Interface (SMC Calling Convention, DEN0022).
//!
//! This module owns the function IDs and return codes. The actual `smc`/`hvc`
//! instruction is in `arch`. (Guest-facing PSCI comes with domains.)

/// PSCI function IDs (SMC32 and SMC64 where they differ).
pub mod fid {
    /// PSCI_VERSION.
    pub const VERSION: u32 = 0x8400_0000;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// CPU_ON, SMC64 calling convention.
    pub const CPU_ON_64: u32 = 0xc400_0003;
    /// CPU_ON, SMC32 calling convention.
    pub const CPU_ON_32: u32 = 0x8400_0003;
    /// PSCI_FEATURES (PSCI 1.0 and later).
    pub const FEATURES: u32 = 0x8400_000a;
}

/// PSCI return codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciError {
    /// NOT_SUPPORTED (-1).
    NotSupported,
    /// INVALID_PARAMETERS (-2).
    InvalidParameters,
    /// DENIED (-3).
    Denied,
    /// ALREADY_ON (-4).
    AlreadyOn,
    /// ON_PENDING (-5).
    OnPending,
    /// INTERNAL_FAILURE (-6).
    InternalFailure,
    /// NOT_PRESENT (-7).
    NotPresent,
    /// DISABLED (-8).
    Disabled,
    /// INVALID_ADDRESS (-9).
    InvalidAddress,
    /// Any other negative value.
    Unknown(i32),
}

impl PsciError {
    /// Decodes a PSCI return value (as the low 32 bits of x0/r0).
    pub fn from_return(ret: i32) -> Result<u32, PsciError> {
        if ret >= 0 {
            return Ok(ret as u32);
        }
        Err(Self::KNOWN.into_iter().find(|e| e.code() == ret).unwrap_or(PsciError::Unknown(ret)))
    }

    /// Every error the specification names.
    pub const KNOWN: [PsciError; 9] = [
        PsciError::NotSupported,
        PsciError::InvalidParameters,
        PsciError::Denied,
        PsciError::AlreadyOn,
        PsciError::OnPending,
        PsciError::InternalFailure,
        PsciError::NotPresent,
        PsciError::Disabled,
        PsciError::InvalidAddress,
    ];

    /// The return code, as the specification numbers it.
    pub fn code(&self) -> i32 {
        match *self {
            PsciError::NotSupported => -1,
            PsciError::InvalidParameters => -2,
            PsciError::Denied => -3,
            PsciError::AlreadyOn => -4,
            PsciError::OnPending => -5,
            PsciError::InternalFailure => -6,
            PsciError::NotPresent => -7,
            PsciError::Disabled => -8,
            PsciError::InvalidAddress => -9,
            PsciError::Unknown(r) => r,
        }
    }

    /// The name used in the PSCI specification.
    pub fn name(&self) -> &'static str {
        match self {
            PsciError::NotSupported => "NOT_SUPPORTED",
            PsciError::InvalidParameters => "INVALID_PARAMETERS",
            PsciError::Denied => "DENIED",
            PsciError::AlreadyOn => "ALREADY_ON",
            PsciError::OnPending => "ON_PENDING",
            PsciError::InternalFailure => "INTERNAL_FAILURE",
            PsciError::NotPresent => "NOT_PRESENT",
            PsciError::Disabled => "DISABLED",
            PsciError::InvalidAddress => "INVALID_ADDRESS",
            PsciError::Unknown(_) => "UNKNOWN",
        }
    }
}

/// Splits a PSCI_VERSION result into (major, minor).
pub fn version_parts(v: u32) -> (u16, u16) {
    ((v >> 16) as u16, v as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_decode_to_names() {
        assert_eq!(PsciError::from_return(0), Ok(0));
        assert_eq!(PsciError::from_return(0x10001), Ok(0x10001));
        assert_eq!(PsciError::from_return(-4).unwrap_err().name(), "ALREADY_ON");
        assert_eq!(PsciError::from_return(-2).unwrap_err().name(), "INVALID_PARAMETERS");
        assert_eq!(PsciError::from_return(-42), Err(PsciError::Unknown(-42)));
    }

    #[test]
    fn version_splits() {
        assert_eq!(version_parts(0x0001_0001), (1, 1));
        assert_eq!(version_parts(0x0000_0002), (0, 2));
    }
}
