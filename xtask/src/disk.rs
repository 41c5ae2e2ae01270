//! Disk images: an MBR partition table written here, and a FAT file system
//! made with `mkfs.vfat` and filled with `mcopy` (mtools), all on a plain
//! file without root.
//!
//! U-Boot's distro boot needs a partition table (a bare "superfloppy" FAT is
//! refused with "No partition table"), so the disk is an MBR with a single
//! bootable FAT32 partition starting at 1 MiB.

use crate::process::{run_checked, tool};
use crate::{Context, Error, Result};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// Sector size.
pub const SECTOR: u64 = 512;
/// First sector of the partition (1 MiB, the usual alignment).
pub const PARTITION_START_LBA: u64 = 2048;
/// MBR partition type: FAT32 with LBA addressing.
pub const TYPE_FAT32_LBA: u8 = 0x0c;
/// Disk signature written into the MBR ("ARMA").
pub const DISK_SIGNATURE: u32 = 0x414d_5241;

/// An MBR with one bootable partition of `sectors` sectors and type
/// `ptype`, starting at [`PARTITION_START_LBA`]; the other entries empty.
pub fn mbr(sectors: u32, ptype: u8) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[440..444].copy_from_slice(&DISK_SIGNATURE.to_le_bytes());
    let e = &mut m[446..462];
    e[0] = 0x80; // bootable
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]); // CHS: beyond CHS range, use LBA
    e[4] = ptype;
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&(PARTITION_START_LBA as u32).to_le_bytes());
    e[12..16].copy_from_slice(&sectors.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    m
}

/// Makes `disk`: an MBR disk whose single FAT32 partition of `size_mib`
/// MiB (at least 64) holds `files`, each `(name in the file system, source)`.
/// The file is sparse: only what is written takes space.
pub fn make_fat_disk(disk: &Path, size_mib: u64, files: &[(&str, &Path)]) -> Result<()> {
    let size_mib = size_mib.max(64);
    let part_bytes = size_mib << 20;
    let offset = PARTITION_START_LBA * SECTOR;
    {
        let f = std::fs::File::create(disk).context(|| format!("creating {}", disk.display()))?;
        f.set_len(offset + part_bytes).context(|| format!("sizing {}", disk.display()))?;
    }
    run_checked(
        tool("mkfs.vfat", "dosfstools")?
            .args(["-F", "32", "-n", "ARMATURE"])
            .arg(format!("--offset={PARTITION_START_LBA}"))
            .arg(format!("-h{PARTITION_START_LBA}"))
            .arg(disk)
            .arg((part_bytes / 1024).to_string()),
        &format!("mkfs.vfat on {}", disk.display()),
    )?;
    let image_arg = format!("{}@@{offset}", disk.display());
    for (name, src) in files {
        run_checked(
            tool("mcopy", "mtools")?
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-o", "-i", &image_arg])
                .arg(src)
                .arg(format!("::/{name}")),
            &format!("mcopy {} to {}:/{name}", src.display(), disk.display()),
        )?;
    }
    let sectors = u32::try_from(part_bytes / SECTOR).map_err(|_| Error::new("partition too large for an MBR"))?;
    let mut f = OpenOptions::new().write(true).open(disk).context(|| format!("opening {}", disk.display()))?;
    f.seek(SeekFrom::Start(0))
        .and_then(|_| f.write_all(&mbr(sectors, TYPE_FAT32_LBA)))
        .context(|| format!("writing the MBR of {}", disk.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::find_program;
    use std::process::Command;

    #[test]
    fn mbr_layout() {
        let m = mbr(131072, TYPE_FAT32_LBA);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0x0c);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 131072);
        // Entries 2-4 are empty.
        assert!(m[462..510].iter().all(|&b| b == 0));
    }

    #[test]
    fn fat_disk_holds_the_files() {
        if find_program("mkfs.vfat").is_none() || find_program("mcopy").is_none() || find_program("mtype").is_none() {
            panic!("mkfs.vfat, mcopy and mtype are needed: run ./x setup");
        }
        let dir = crate::paths::scratch_dir("disk-unit-test").unwrap();
        let src = dir.join("hello.txt");
        std::fs::write(&src, b"hello from the disk test\n").unwrap();
        let disk = dir.join("disk.img");
        make_fat_disk(&disk, 64, &[("boot.txt", &src)]).unwrap();
        assert_eq!(std::fs::metadata(&disk).unwrap().len(), (1 << 20) + (64 << 20));
        let out = Command::new(find_program("mtype").unwrap())
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-i", &format!("{}@@1048576", disk.display()), "::/boot.txt"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the disk test\n");
        let mut head = vec![0u8; (1 << 20) + 512];
        std::io::Read::read_exact(&mut std::fs::File::open(&disk).unwrap(), &mut head).unwrap();
        assert_eq!(&head[510..512], &[0x55, 0xaa]);
        // The FAT boot sector is at 1 MiB.
        assert_eq!(&head[(1 << 20) + 82..(1 << 20) + 87], b"FAT32");
    }
}
