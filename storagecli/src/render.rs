//! Human tables of what arrays answer (`--json` prints the answers themselves).

use std::fmt::Write as _;

use lparmover::api::array::{ArrayInfo, FabricLogin, HostGroup, Lu, Pair, RvAccess};

/// Pads cells to the widest of each column.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        line(header.iter().map(|h| (*h).to_owned()).collect())
    );
    for row in rows {
        let _ = writeln!(out, "{}", line(row.clone()));
    }
    out
}

/// `array list` (auunitref).
pub fn arrays(rows: &[(String, Result<ArrayInfo, String>)]) -> String {
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, info)| match info {
            Ok(i) => vec![
                name.clone(),
                i.model.clone(),
                i.serial.clone(),
                i.controllers
                    .iter()
                    .map(|c| format!("CTL{} {}", c.number, c.ip))
                    .collect::<Vec<_>>()
                    .join(", "),
                i.ports
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                i.security.label().to_owned(),
            ],
            Err(e) => vec![name.clone(), format!("not answering: {e}")],
        })
        .collect();
    table(
        &[
            "Array",
            "Model",
            "Serial",
            "Controllers",
            "Ports",
            "Security",
        ],
        &body,
    )
}

/// `hostgroup list`.
pub fn host_groups(groups: &[HostGroup]) -> String {
    let body: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.port.to_string(),
                g.number.to_string(),
                g.name.clone(),
                g.wwns.len().to_string(),
                g.luns
                    .iter()
                    .map(|l| format!("{}→LU{}", l.lun, l.lu))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(&["Port", "Group", "Name", "WWPNs", "LUNs"], &body)
}

/// `hostgroup show`.
pub fn host_group(group: &HostGroup, lus: &[Lu], logins: &[FabricLogin]) -> String {
    let mut out = format!("Host group {}\n", group.label());
    let wwns: Vec<Vec<String>> = group
        .wwns
        .iter()
        .map(|w| {
            let login = logins.iter().find(|l| l.wwpn == w.wwpn);
            vec![
                w.wwpn.to_string(),
                w.nickname.clone(),
                login.map_or_else(
                    || "-".to_owned(),
                    |l| format!("{} {} → {}", l.blade, l.blade_port, l.array_port),
                ),
            ]
        })
        .collect();
    out.push_str(&table(&["WWPN", "Nickname", "Logged in"], &wwns));
    let luns: Vec<Vec<String>> = group
        .luns
        .iter()
        .map(|m| {
            let lu = lus.iter().find(|l| l.number == m.lu);
            vec![
                m.lun.to_string(),
                m.lu.to_string(),
                lu.map(|l| l.name.clone()).unwrap_or_default(),
                lu.map(|l| format!("{} MiB", l.size_mib))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["LUN", "LU", "Name", "Size"], &luns));
    out
}

/// `wwn list` (auhgwwn -refer): every permitted WWPN with its group and login.
pub fn wwns(groups: &[HostGroup], logins: &[FabricLogin]) -> String {
    let body: Vec<Vec<String>> = groups
        .iter()
        .flat_map(|g| {
            g.wwns.iter().map(move |w| {
                let login = logins.iter().find(|l| l.wwpn == w.wwpn);
                vec![
                    g.port.to_string(),
                    g.number.to_string(),
                    g.name.clone(),
                    w.wwpn.to_string(),
                    w.nickname.clone(),
                    login.map_or_else(
                        || "-".to_owned(),
                        |l| format!("{} {}", l.blade, l.blade_port),
                    ),
                ]
            })
        })
        .collect();
    table(
        &[
            "Port",
            "Group",
            "Host group",
            "WWPN",
            "Nickname",
            "Logged in",
        ],
        &body,
    )
}

/// `fabric`.
pub fn logins(logins: &[FabricLogin]) -> String {
    let body: Vec<Vec<String>> = logins
        .iter()
        .map(|l| {
            vec![
                l.wwpn.to_string(),
                l.blade.clone(),
                l.blade_port.to_string(),
                l.array_port.to_string(),
                l.since.format("%Y-%m-%d %H:%M:%S").to_string(),
            ]
        })
        .collect();
    table(&["WWPN", "Blade", "FC port", "Array port", "Since"], &body)
}

/// `lu list`.
pub fn lus(lus: &[Lu], pairs: &[Pair]) -> String {
    let role = |lu: &Lu| {
        pairs
            .iter()
            .find_map(|p| {
                if p.mv == lu.number {
                    Some(format!("MV of {} {}", p.rv, p.rv_name))
                } else if p.rv == lu.number {
                    Some(format!("RV of {} {}", p.mv, p.mv_name))
                } else {
                    None
                }
            })
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = lus
        .iter()
        .map(|l| {
            vec![
                l.number.to_string(),
                l.name.clone(),
                l.size_mib.to_string(),
                role(l),
            ]
        })
        .collect();
    table(&["LU", "Name", "MiB", "Pair"], &rows)
}

fn when(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map(stamp).unwrap_or_else(|| "-".into())
}

/// The seed's time stamps: local time, `2001/02/21 11:06:13`.
pub fn stamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.with_timezone(&chrono::Local)
        .format("%Y/%m/%d %H:%M:%S")
        .to_string()
}

/// `pair list`.
pub fn pairs(pairs: &[Pair]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|p| {
            vec![
                format!("{} {}", p.mv, p.mv_name),
                format!("{} {}", p.rv, p.rv_name),
                p.state.code().to_owned(),
                p.state.label().to_owned(),
                match p.rv_access {
                    RvAccess::Rw => "rw".into(),
                    RvAccess::Nr => "nr".into(),
                },
                if p.state.copying() {
                    format!("{}%", p.progress_percent())
                } else {
                    "-".into()
                },
                p.difference_mib.to_string(),
                when(p.started_at),
                when(p.ended_at),
            ]
        })
        .collect();
    table(
        &[
            "MV",
            "RV",
            "State",
            "",
            "RV access",
            "Copied",
            "Diff MiB",
            "Started",
            "Ended",
        ],
        &rows,
    )
}

/// `pair status` (iSMrc_query): one pair, field by field.
pub fn pair(p: &Pair) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "MV:{:<22}{}", p.mv.to_string(), p.mv_name);
    let _ = writeln!(out, "RV:{:<22}{}", p.rv.to_string(), p.rv_name);
    let _ = writeln!(
        out,
        "{:<25}{} ({})",
        "State:",
        p.state.code(),
        p.state.label()
    );
    let _ = writeln!(
        out,
        "{:<25}{}",
        "RV Access:",
        match p.rv_access {
            RvAccess::Rw => "rw (Read/Write)",
            RvAccess::Nr => "nr (Not Ready)",
        }
    );
    if let Some(mode) = p.restore_mode {
        let _ = writeln!(out, "{:<25}{mode:?}", "Restore Mode:");
    }
    let _ = writeln!(
        out,
        "{:<25}{}",
        "RV Holds A Copy:",
        if p.synchronized { "yes" } else { "no" }
    );
    if p.state.copying() || p.copy_remaining_mib > 0 {
        let _ = writeln!(
            out,
            "{:<25}{}% ({} of {} MiB to go)",
            "Copy Progress:",
            p.progress_percent(),
            p.copy_remaining_mib,
            p.copy_total_mib
        );
    }
    let _ = writeln!(out, "{:<25}{} MiB", "Difference:", p.difference_mib);
    let _ = writeln!(out, "{:<25}{}", "Start Time:", when(p.started_at));
    let _ = writeln!(out, "{:<25}{}", "End Time:", when(p.ended_at));
    if let Some(f) = &p.fault {
        let _ = writeln!(out, "{:<25}{f}", "Fault:");
    }
    out
}

/// The seed's operation block: `Replicate Start          2001/02/21 11:06:13`, then the
/// volumes.
pub fn operation(title: &str, at: chrono::DateTime<chrono::Utc>, p: &Pair) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{title:<25}{}", stamp(at));
    let _ = writeln!(out, "MV:{:<22}{}", p.mv.to_string(), p.mv_name);
    let _ = writeln!(out, "RV:{:<22}{}", p.rv.to_string(), p.rv_name);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let t = table(
            &["A", "Long header"],
            &[
                vec!["wide cell".into(), "x".into()],
                vec!["y".into(), "z".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "A          Long header");
        assert_eq!(lines[1], "wide cell  x");
        assert_eq!(lines[2], "y          z");
    }
}
