//! Fuzz target: the MMIO/syndrome decoder (`src/mmio.rs`, `src/crash/esr.rs`).
//!
//! Arbitrary `ESR_EL2`, `FAR_EL2`, `HPFAR_EL2`, guest registers and device
//! data. Invariants: decoding never panics; a decoded access agrees with the
//! syndrome's fields (exception class 0x24, ISV, SAS, SRT in 0..=31, WnR,
//! SSE only for loads, SF, AR, IL → 2 or 4 bytes), its IPA is FIPA's page
//! with FAR's page offset; refused syndromes name why; a load's register
//! value is the data cut to the size, sign-extended from the access's top
//! bit (for SSE) to the register's width, with a `Wt`'s upper half clear; a
//! store writes the register's low bytes (`xzr`/`wzr`: zero); emulation
//! through an [`MmioMap`] touches only the transfer register, and only for a
//! load; every message formats.

#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use armature::crash::esr::Syndrome;
use armature::crash::report;
use armature::mm::IntermediatePhysAddr;
use armature::mmio::{self, AccessSize, DecodeError, MmioDevice, MmioError, MmioMap};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    esr: u64,
    far: u64,
    hpfar: u64,
    /// Make the syndrome a valid-looking trapped access (EC 0x24, ISV,
    /// translation fault, no FnV/S1PTW/CM), keeping the other fields.
    shape: bool,
    regs: [u64; 31],
    data: u64,
    /// Where the emulated device is, as a page number under 4 GiB.
    dev_page: u32,
}

/// A device that returns `data` for any read and records writes.
struct Dev {
    data: u64,
    last_write: Mutex<Option<(u64, AccessSize, u64)>>,
}

impl MmioDevice for Dev {
    fn read(&self, _vcpu: usize, offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        assert!(offset.is_multiple_of(size.bytes()) && offset + size.bytes() <= 0x1000, "bad read routed");
        Ok(self.data)
    }
    fn write(&self, _vcpu: usize, offset: u64, size: AccessSize, value: u64) -> Result<(), MmioError> {
        assert!(offset.is_multiple_of(size.bytes()) && offset + size.bytes() <= 0x1000, "bad write routed");
        assert_eq!(value & !size.mask(), 0, "store value not cut to its size");
        *self.last_write.lock().unwrap() = Some((offset, size, value));
        Ok(())
    }
}

fuzz_target!(|input: Input| {
    let mut esr = input.esr;
    if input.shape {
        // EC 0x24, ISV; DFSC a level-3 translation fault; FnV, S1PTW, CM clear.
        esr = (esr & !(0x3f << 26) & !0x3f & !(1 << 10) & !(1 << 7) & !(1 << 8)) | (0x24 << 26) | (1 << 24) | 0x07;
    }
    let syn = Syndrome::new(esr);
    let iss = syn.iss;
    let ipa = mmio::fault_ipa(input.far, input.hpfar);
    assert_eq!(ipa.as_u64() & 0xfff, input.far & 0xfff, "IPA page offset is not FAR's");
    assert_eq!(ipa.as_u64() >> 12, (input.hpfar >> 4) & ((1 << 40) - 1), "IPA page is not FIPA");

    // The crash dump's view of the same syndrome formats.
    let mut line = String::new();
    report::syndrome(&mut line, "ESR_EL2", &syn, 16).expect("formats");
    let _ = syn.class_name();
    let _ = armature::crash::esr::fault_level(syn.fault_status());

    match mmio::decode(esr, input.far, input.hpfar) {
        Ok(a) => {
            assert_eq!(syn.ec, mmio::EC_DATA_ABORT_LOWER);
            assert!(iss & (1 << 24) != 0, "decoded without ISV");
            assert_eq!(iss & (1 << 10), 0, "decoded with FnV");
            assert!(matches!(syn.fault_status(), 0x04..=0x0f | 0x2b), "decoded a non-trap fault");
            assert_eq!(a.ipa, ipa);
            assert!(a.reg <= 31);
            assert_eq!(u32::from(a.reg), (iss >> 16) & 0x1f);
            assert_eq!(a.size, AccessSize::from_sas(iss >> 22));
            assert_eq!(a.write, iss & (1 << 6) != 0);
            assert!(!(a.write && a.sign_extend), "a sign-extending store");
            assert_eq!(a.sign_extend, !a.write && iss & (1 << 21) != 0);
            assert_eq!(a.sixty_four, iss & (1 << 15) != 0);
            assert_eq!(a.acquire_release, iss & (1 << 14) != 0);
            assert_eq!(a.insn_len, if syn.il { 4 } else { 2 });
            let _ = format!("{a} {}", a.reg_name());

            // Load value: width, sign extension, upper half.
            let v = a.load_value(input.data);
            let bits = a.size.bits();
            let cut = input.data & a.size.mask();
            if !a.sixty_four {
                assert_eq!(v >> 32, 0, "{a}: a W register load left the upper half");
            }
            let reg_bits = if a.sixty_four { 64 } else { 32 };
            let reg_mask = if a.sixty_four { u64::MAX } else { 0xffff_ffff };
            let negative = bits < 64 && cut >> (bits - 1) & 1 == 1;
            let expected = if a.sign_extend && negative && bits < reg_bits {
                (cut | !a.size.mask()) & reg_mask
            } else {
                cut & reg_mask
            };
            assert_eq!(v, expected, "{a}: load of {:#x}", input.data);
            assert_eq!(a.store_value(input.data), cut);

            // Emulation against a device at a page-aligned IPA: move the
            // access into it, keeping its page offset.
            let base = u64::from(input.dev_page) << 12;
            let dev = Arc::new(Dev { data: input.data, last_write: Mutex::new(None) });
            let mut map = MmioMap::new();
            map.add(IntermediatePhysAddr::new(base), 0x1000, "dev", dev.clone()).expect("one region");
            let mut at = a;
            at.ipa = IntermediatePhysAddr::new(base | (a.ipa.as_u64() & 0xfff));
            let mut regs = input.regs;
            match map.emulate(0, &at, &mut regs) {
                Ok(()) => {
                    assert!(at.ipa.as_u64().is_multiple_of(a.size.bytes()), "unaligned access emulated");
                    for n in 0..31u8 {
                        let i = usize::from(n);
                        if at.write || n != at.reg {
                            assert_eq!(regs[i], input.regs[i], "{at}: x{n} changed");
                        } else {
                            assert_eq!(regs[i], v, "{at}: wrong value loaded");
                        }
                    }
                    let w = *dev.last_write.lock().unwrap();
                    if at.write {
                        let data = if at.reg == 31 { 0 } else { input.regs[usize::from(at.reg)] };
                        assert_eq!(w, Some((at.ipa.as_u64() - base, at.size, data & at.size.mask())), "{at}");
                    } else {
                        assert_eq!(w, None, "a load wrote");
                    }
                }
                Err(e) => {
                    assert_eq!(regs, input.regs, "a failed access changed registers");
                    assert!(!at.ipa.as_u64().is_multiple_of(a.size.bytes()), "{e}");
                    let _ = e.to_string();
                }
            }
            // Outside the region: unmapped, registers untouched.
            let mut out = at;
            out.ipa = IntermediatePhysAddr::new(base.wrapping_add(0x1000) | (at.ipa.as_u64() & 0xfff));
            if out.ipa.as_u64() >= base + 0x1000 {
                let mut regs = input.regs;
                let e = map.emulate(0, &out, &mut regs).expect_err("access outside every region");
                assert_eq!(e.error, MmioError::Unmapped);
                assert_eq!(regs, input.regs);
            }
        }
        Err(e) => {
            let _ = e.to_string();
            match e {
                DecodeError::NotDataAbort { ec } => assert!(ec == syn.ec && ec != mmio::EC_DATA_ABORT_LOWER),
                _ => {
                    assert_eq!(syn.ec, mmio::EC_DATA_ABORT_LOWER);
                    if let Some(i) = e.ipa() {
                        assert!(i == ipa || i == ipa.align_down(0x1000), "error names another IPA");
                    }
                }
            }
            if input.shape && iss & (1 << 24) != 0 {
                panic!("a well-formed syndrome {esr:#x} was refused: {e}");
            }
        }
    }
});
