//! A strict check (host tests only) of the nodes dom0's generated device
//! tree carries against their bindings, independent of the project's reader
//! and writer (the tree is parsed with the `fdt` crate): the generic timer
//! (Linux's `timer/arm,arch_timer.yaml`: compatible, at least four and at
//! most five `interrupts` of the interrupt parent's cell size, each a PPI
//! under a GIC, `always-on` a flag, no other properties), `/cpus` and its
//! CPUs, `/psci`, `/memory` and `/chosen` (dtschema's core schemas and the
//! PSCI binding). Every violation names the node and the rule.

extern crate std;
use std::format;
use std::string::String;
use std::vec::Vec;

type Node<'b, 'a> = fdt::node::FdtNode<'b, 'a>;

/// The violations found in `blob` (empty: it conforms).
pub fn check(blob: &[u8]) -> Vec<String> {
    let Ok(f) = fdt::Fdt::new(blob) else { return std::vec!["the blob is not a flattened device tree".into()] };
    let mut c = Checker { f: &f, out: Vec::new() };
    let Some(root) = f.find_node("/") else { return std::vec!["no root node".into()] };
    c.walk(root, "/".into(), None);
    c.out
}

struct Checker<'b, 'a> {
    f: &'b fdt::Fdt<'a>,
    out: Vec<String>,
}

fn be32s(v: &[u8]) -> Vec<u32> {
    v.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn strings(v: &[u8]) -> Vec<&str> {
    v.strip_suffix(&[0])
        .unwrap_or(v)
        .split(|&b| b == 0)
        .map(|s| core::str::from_utf8(s).unwrap_or("\u{fffd}"))
        .collect()
}

fn prop<'b>(n: &Node<'b, '_>, name: &str) -> Option<&'b [u8]> {
    n.properties().find(|p| p.name == name).map(|p| p.value)
}

fn u32_prop(n: &Node<'_, '_>, name: &str) -> Option<u32> {
    prop(n, name).filter(|v| v.len() == 4).map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// A number of `cells` cells from `v`.
fn number(v: &[u32]) -> u64 {
    v.iter().fold(0, |acc, &c| (acc << 32) | u64::from(c))
}

impl<'b, 'a> Checker<'b, 'a> {
    fn bad(&mut self, path: &str, what: String) {
        self.out.push(format!("{path}: {what}"));
    }

    /// Walks the tree; `ip` is the `interrupt-parent` phandle in force.
    fn walk(&mut self, n: Node<'b, 'a>, path: String, ip: Option<u32>) {
        let ip = u32_prop(&n, "interrupt-parent").or(ip);
        let compat: Vec<&str> = prop(&n, "compatible").map(strings).unwrap_or_default();
        if compat.iter().any(|c| *c == "arm,armv8-timer" || *c == "arm,armv7-timer") {
            self.timer(&n, &path, &compat, ip);
        }
        if compat.iter().any(|c| c.starts_with("arm,psci")) {
            self.psci(&n, &path, &compat);
        }
        if prop(&n, "device_type") == Some(b"memory\0") {
            self.memory(&n, &path);
        }
        match path.as_str() {
            "/cpus" => self.cpus(&n, &path),
            "/chosen" => self.chosen(&n, &path),
            _ => {}
        }
        for c in n.children() {
            let p = if path == "/" { format!("/{}", c.name) } else { format!("{path}/{}", c.name) };
            self.walk(c, p, ip);
        }
    }

    fn node_by_phandle(&self, phandle: u32) -> Option<Node<'b, 'a>> {
        fn find<'b, 'a>(n: Node<'b, 'a>, ph: u32) -> Option<Node<'b, 'a>> {
            if u32_prop(&n, "phandle") == Some(ph) || u32_prop(&n, "linux,phandle") == Some(ph) {
                return Some(n);
            }
            n.children().find_map(|c| find(c, ph))
        }
        find(self.f.find_node("/")?, phandle)
    }

    /// `arm,arch_timer.yaml`.
    fn timer(&mut self, n: &Node<'b, 'a>, path: &str, compat: &[&str], ip: Option<u32>) {
        let ok = [
            &["arm,armv8-timer"][..],
            &["arm,armv7-timer"],
            &["arm,armv8-timer", "arm,armv7-timer"],
            &["arm,cortex-a15-timer", "arm,armv7-timer"],
        ];
        if !ok.contains(&compat) {
            self.bad(path, format!("compatible {compat:?} is not one the timer binding lists"));
        }
        const ALLOWED: [&str; 10] = [
            "compatible",
            "interrupts",
            "interrupt-names",
            "interrupt-parent",
            "always-on",
            "clock-frequency",
            "arm,cpu-registers-not-fw-configured",
            "arm,no-tick-in-suspend",
            "phandle",
            "status",
        ];
        for p in n.properties() {
            if !ALLOWED.contains(&p.name) {
                self.bad(path, format!("property {} is not in the timer binding", p.name));
            }
        }
        for flag in ["always-on", "arm,cpu-registers-not-fw-configured", "arm,no-tick-in-suspend"] {
            if prop(n, flag).is_some_and(|v| !v.is_empty()) {
                self.bad(path, format!("{flag} is a flag and must be empty"));
            }
        }
        if prop(n, "clock-frequency").is_some() && u32_prop(n, "clock-frequency").is_none() {
            self.bad(path, "clock-frequency must be one cell".into());
        }
        let Some(parent) = ip.and_then(|ph| self.node_by_phandle(ph)) else {
            self.bad(path, "no interrupt parent".into());
            return;
        };
        let Some(cells) = u32_prop(&parent, "#interrupt-cells").filter(|&c| c > 0) else {
            self.bad(path, format!("interrupt parent {} has no #interrupt-cells", parent.name));
            return;
        };
        let Some(irqs) = prop(n, "interrupts") else {
            self.bad(path, "interrupts is missing".into());
            return;
        };
        let spec = cells as usize * 4;
        if irqs.len() % spec != 0 {
            self.bad(
                path,
                format!("interrupts is {} bytes, not a whole number of {cells}-cell specifiers", irqs.len()),
            );
        }
        let count = irqs.len() / spec;
        if !(4..=5).contains(&count) {
            self.bad(
                path,
                format!(
                    "interrupts has {count} specifier(s); the binding lists 4 (secure physical, non-secure \
                     physical, virtual, hypervisor physical) and an optional hypervisor virtual"
                ),
            );
        }
        let gic = prop(&parent, "compatible").map(strings).unwrap_or_default().iter().any(|c| c.starts_with("arm,gic"));
        if gic && cells >= 3 {
            for (i, s) in irqs.chunks_exact(spec).enumerate() {
                let s = be32s(s);
                if s[0] != 1 {
                    self.bad(path, format!("interrupts entry {i} is not a PPI (type {})", s[0]));
                }
            }
        }
    }

    /// `arm/psci.yaml` (PSCI 0.2 and later: no function IDs needed).
    fn psci(&mut self, n: &Node<'b, 'a>, path: &str, compat: &[&str]) {
        let ok = [
            &["arm,psci"][..],
            &["arm,psci-0.2"],
            &["arm,psci-1.0"],
            &["arm,psci-1.0", "arm,psci-0.2"],
            &["arm,psci-0.2", "arm,psci"],
            &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"],
        ];
        if !ok.contains(&compat) {
            self.bad(path, format!("compatible {compat:?} is not one the PSCI binding lists"));
        }
        match prop(n, "method").map(strings).as_deref() {
            Some(["hvc"] | ["smc"]) => {}
            m => self.bad(path, format!("method {m:?} is not \"hvc\" or \"smc\"")),
        }
        if compat == ["arm,psci"] && prop(n, "cpu_on").is_none() {
            self.bad(path, "PSCI 0.1 needs its function IDs (cpu_on)".into());
        }
    }

    /// The root's (`#address-cells`, `#size-cells`).
    fn root_cells(&self) -> (u32, u32) {
        let root = self.f.find_node("/");
        let get = |name: &str, dflt: u32| root.as_ref().and_then(|r| u32_prop(r, name)).unwrap_or(dflt);
        (get("#address-cells", 2), get("#size-cells", 1))
    }

    /// dtschema's `memory.yaml`, for a node under the root.
    fn memory(&mut self, n: &Node<'b, 'a>, path: &str) {
        let (ac, sc) = self.root_cells();
        let Some(reg) = prop(n, "reg").filter(|r| !r.is_empty()) else {
            self.bad(path, "a memory node needs reg".into());
            return;
        };
        let stride = (ac + sc) as usize * 4;
        if reg.len() % stride != 0 {
            self.bad(path, format!("reg is {} bytes, not whole (address, size) pairs of {ac}+{sc} cells", reg.len()));
            return;
        }
        let cells = be32s(reg);
        let banks: Vec<(u64, u64)> = cells
            .chunks_exact((ac + sc) as usize)
            .map(|c| (number(&c[..ac as usize]), number(&c[ac as usize..])))
            .collect();
        if banks.iter().any(|&(_, size)| size == 0) {
            self.bad(path, "a memory bank of size 0".into());
        }
        self.unit_address(path, banks[0].0);
    }

    /// The unit address of `path` must be the first `reg` address, in
    /// lower-case hex without leading zeros (dtc's `unit_address_format`
    /// and `unit_address_vs_reg`).
    fn unit_address(&mut self, path: &str, addr: u64) {
        let name = path.rsplit('/').next().unwrap_or("");
        match name.split_once('@') {
            Some((_, unit)) if unit == format!("{addr:x}") => {}
            Some((_, unit)) => self.bad(path, format!("unit address {unit} is not the reg address {addr:x}")),
            None => self.bad(path, format!("no unit address for reg {addr:#x}")),
        }
    }

    /// dtschema's `cpus.yaml` and `cpu.yaml`.
    fn cpus(&mut self, n: &Node<'b, 'a>, path: &str) {
        let ac = u32_prop(n, "#address-cells");
        if !matches!(ac, Some(1 | 2)) {
            self.bad(path, format!("#address-cells {ac:?} is not 1 or 2"));
        }
        if u32_prop(n, "#size-cells") != Some(0) {
            self.bad(path, "#size-cells must be 0".into());
        }
        let ac = ac.unwrap_or(1) as usize;
        let mut ncpus = 0;
        let has_psci = self
            .f
            .all_nodes()
            .any(|x| prop(&x, "compatible").map(strings).unwrap_or_default().iter().any(|c| c.starts_with("arm,psci")));
        for c in n.children() {
            let cpath = format!("{path}/{}", c.name);
            if prop(&c, "device_type") != Some(b"cpu\0") {
                if c.name.starts_with("cpu@") {
                    self.bad(&cpath, "device_type must be \"cpu\"".into());
                }
                continue;
            }
            ncpus += 1;
            match prop(&c, "reg").map(be32s) {
                Some(r) if r.len() == ac => {
                    let mpidr = number(&r);
                    if mpidr & !0xff_00ff_ffff != 0 {
                        self.bad(&cpath, format!("reg {mpidr:#x} has bits outside MPIDR's affinity fields"));
                    }
                    self.unit_address(&cpath, mpidr);
                }
                r => self.bad(&cpath, format!("reg {r:x?} is not {ac} cell(s)")),
            }
            if prop(&c, "compatible").is_none_or(|v| v.len() < 2) {
                self.bad(&cpath, "compatible is missing".into());
            }
            match prop(&c, "enable-method").map(strings).as_deref() {
                Some(["psci"]) if !has_psci => self.bad(&cpath, "enable-method \"psci\" without a PSCI node".into()),
                Some(["psci"] | ["spin-table"]) | None => {}
                Some(m) => self.bad(&cpath, format!("enable-method {m:?}")),
            }
        }
        if ncpus == 0 {
            self.bad(path, "no CPU".into());
        }
    }

    /// dtschema's `chosen.yaml`.
    fn chosen(&mut self, n: &Node<'b, 'a>, path: &str) {
        if let Some(v) = prop(n, "bootargs")
            && (v.last() != Some(&0) || v[..v.len() - 1].contains(&0))
        {
            self.bad(path, "bootargs is not one string".into());
        }
        let initrd = |name: &str| {
            prop(n, name).map(|v| match v.len() {
                4 | 8 => Some(number(&be32s(v))),
                _ => None,
            })
        };
        match (initrd("linux,initrd-start"), initrd("linux,initrd-end")) {
            (None, None) => {}
            (Some(Some(s)), Some(Some(e))) if e >= s => {}
            (s, e) => {
                self.bad(path, format!("linux,initrd-start {s:x?} / -end {e:x?}: both, 32 or 64 bits, end >= start"))
            }
        }
        if let Some(v) = prop(n, "stdout-path") {
            let s = strings(v);
            let target = s.first().map(|p| p.split(':').next().unwrap_or(p)).unwrap_or("");
            let resolves = if target.starts_with('/') {
                self.f.find_node(target).is_some()
            } else {
                self.f.find_node("/aliases").and_then(|a| prop(&a, target)).is_some()
            };
            if s.len() != 1 || !resolves {
                self.bad(path, format!("stdout-path {s:?} does not name a node"));
            }
        }
        for p in n.properties() {
            if p.name.starts_with("xen,") || p.name.starts_with("armature,") {
                self.bad(path, format!("{} is the hypervisor's, not dom0's", p.name));
            }
        }
        if let Some(c) = n.children().next() {
            self.bad(path, format!("subnode {} (boot modules are the hypervisor's)", c.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec;

    /// What a tree with these pieces looks like to the check.
    struct Tree {
        timer_irqs: Vec<u32>,
        timer_compat: &'static [&'static str],
        timer_extra: Option<&'static str>,
        always_on: Option<&'static [u8]>,
        psci_method: &'static str,
        cpu_reg: u32,
        cpu_name: &'static str,
        size_cells: u32,
        mem_name: &'static str,
        initrd_end: u64,
        stdout: &'static str,
    }

    const GOOD: Tree = Tree {
        timer_irqs: Vec::new(),
        timer_compat: &["arm,armv8-timer"],
        timer_extra: None,
        always_on: Some(b""),
        psci_method: "hvc",
        cpu_reg: 1,
        cpu_name: "cpu@1",
        size_cells: 2,
        mem_name: "memory@40000000",
        initrd_end: 0x4100_0000,
        stdout: "/pl011@9000000",
    };

    const FOUR: [u32; 12] = [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4];

    fn blob(t: &Tree) -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", t.size_cells).unwrap();
        w.property_u32("interrupt-parent", 1).unwrap();
        let n = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "console=ttyAMA0").unwrap();
        w.property_u64("linux,initrd-start", 0x4000_0000).unwrap();
        w.property_u64("linux,initrd-end", t.initrd_end).unwrap();
        w.property_string("stdout-path", t.stdout).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node(t.mem_name).unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u32("reg", &[0, 0x4000_0000, 0, 0x2000_0000]).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        let c = w.begin_node(t.cpu_name).unwrap();
        w.property_string("device_type", "cpu").unwrap();
        w.property_string("compatible", "arm,cortex-a57").unwrap();
        w.property_u32("reg", t.cpu_reg).unwrap();
        w.property_string("enable-method", "psci").unwrap();
        w.end_node(c).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("psci").unwrap();
        w.property_string_list("compatible", vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()]).unwrap();
        w.property_string("method", t.psci_method).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("intc@8000000").unwrap();
        w.property_string("compatible", "arm,gic-v3").unwrap();
        w.property_null("interrupt-controller").unwrap();
        w.property_u32("#interrupt-cells", 3).unwrap();
        w.property_array_u32("reg", &[0, 0x0800_0000, 0, 0x1_0000]).unwrap();
        w.property_phandle(1).unwrap();
        w.end_node(n).unwrap();
        let n = w.begin_node("timer").unwrap();
        w.property_string_list("compatible", t.timer_compat.iter().map(|s| s.to_string()).collect()).unwrap();
        let irqs = if t.timer_irqs.is_empty() { FOUR.to_vec() } else { t.timer_irqs.clone() };
        w.property_array_u32("interrupts", &irqs).unwrap();
        if let Some(v) = t.always_on {
            w.property("always-on", v).unwrap();
        }
        if let Some(p) = t.timer_extra {
            w.property_u32(p, 1).unwrap();
        }
        w.end_node(n).unwrap();
        let n = w.begin_node("pl011@9000000").unwrap();
        w.property_string("compatible", "arm,pl011").unwrap();
        w.end_node(n).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn violations(t: Tree) -> Vec<String> {
        check(&blob(&t))
    }

    #[test]
    fn a_conforming_tree_passes() {
        assert_eq!(violations(GOOD), Vec::<String>::new());
        // Four or five timer interrupts; always-on is optional.
        let five = [&FOUR[..], &[1, 12, 4]].concat();
        assert_eq!(violations(Tree { timer_irqs: five, always_on: None, ..GOOD }), Vec::<String>::new());
    }

    /// The generated tree had three: a guest that reads the binding
    /// strictly stopped there.
    #[test]
    fn the_timer_needs_four_whole_ppis() {
        let v = violations(Tree { timer_irqs: FOUR[..9].to_vec(), ..GOOD });
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].starts_with("/timer: interrupts has 3 specifier(s)"), "{v:?}");
        let v = violations(Tree { timer_irqs: [&FOUR[..], &[1, 12, 4, 1, 9, 4]].concat(), ..GOOD });
        assert!(v[0].starts_with("/timer: interrupts has 6 specifier(s)"), "{v:?}");
        // Not a whole number of the parent's 3-cell specifiers.
        let v = violations(Tree { timer_irqs: FOUR[..11].to_vec(), ..GOOD });
        assert!(v.iter().any(|l| l.contains("not a whole number of 3-cell specifiers")), "{v:?}");
        // An SPI where a PPI belongs.
        let mut spi = FOUR.to_vec();
        spi[3] = 0;
        assert_eq!(violations(Tree { timer_irqs: spi, ..GOOD }), ["/timer: interrupts entry 1 is not a PPI (type 0)"]);
    }

    #[test]
    fn the_timer_compatible_and_properties_follow_the_binding() {
        assert_eq!(
            violations(Tree { timer_compat: &["arm,armv8-timer", "arm,cortex-a57-timer"], ..GOOD }),
            ["/timer: compatible [\"arm,armv8-timer\", \"arm,cortex-a57-timer\"] is not one the timer binding lists"]
        );
        assert_eq!(
            violations(Tree { always_on: Some(&[0, 0, 0, 1]), ..GOOD }),
            ["/timer: always-on is a flag and must be empty"]
        );
        assert_eq!(
            violations(Tree { timer_extra: Some("reg"), ..GOOD }),
            ["/timer: property reg is not in the timer binding"]
        );
    }

    #[test]
    fn cpus_psci_memory_and_chosen_are_checked() {
        assert_eq!(
            violations(Tree { psci_method: "svc", ..GOOD }),
            ["/psci: method Some([\"svc\"]) is not \"hvc\" or \"smc\""]
        );
        assert_eq!(
            violations(Tree { cpu_name: "cpu@2", ..GOOD }),
            ["/cpus/cpu@2: unit address 2 is not the reg address 1"]
        );
        assert_eq!(
            violations(Tree { mem_name: "memory@40000001", ..GOOD }),
            ["/memory@40000001: unit address 40000001 is not the reg address 40000000"]
        );
        // reg under #size-cells = 1 is three cells per bank: 16 bytes is not whole.
        let v = violations(Tree { size_cells: 1, ..GOOD });
        assert!(v.iter().any(|l| l.starts_with("/memory@40000000: reg is 16 bytes")), "{v:?}");
        let v = violations(Tree { initrd_end: 0x3000_0000, ..GOOD });
        assert!(v[0].starts_with("/chosen: linux,initrd-start"), "{v:?}");
        assert_eq!(
            violations(Tree { stdout: "/uart@0", ..GOOD }),
            ["/chosen: stdout-path [\"/uart@0\"] does not name a node"]
        );
    }
}
