//! The array CLI's own command names (seed table "Commands for Storage Navigator Modular 2 CLI
//! executed from HVM Navigator"), translated into storagecli's subcommands before parsing, so a
//! script written for the array's CLI runs unchanged.
//!
//! | array CLI | storagecli |
//! | --- | --- |
//! | `auunitadd -unit U -statedir DIR` | `array add U --state-dir DIR` |
//! | `auunitref` | `array list` |
//! | `auhgwwn -unit U -refer` | `wwn list U` |
//! | `auhgwwn -unit U -assign\|-set -permhg 0 A WWPN [WWNN] -gno G` | `wwn register U 0A G WWPN` |
//! | `auhgwwn -unit U -rm -permhg 0 A WWPN [WWNN] -gno G` | `wwn remove U 0A G WWPN` |
//! | `auhgwwn -unit U -chg -rename 0 A WWPN [WWNN] -gno G [-]newwname N` | `wwn nickname U 0A G WWPN N` |
//! | `auhgout -unit U -file F` | `hostgroup backup U --file F` |
//! | `aulogin -unit U` | `login U` |
//! | `aulogout -unit U` | `logout U` |
//! | `auaccountenv -set -uid ID -authentication\|-password -unit U` | `account set U --user ID --mode …` |
//! | `auaccountenv -rm -unit U` | `account remove U` |
//! | `iSMrc_pair -pair -mv MV -mvflg ld -rv RV -rvflg ld` | `pair set --mv MV --rv RV` |
//! | `iSMrc_pair -unpair -mv MV -mvflg ld` | `pair unset MV` |
//! | `iSMrc_replicate -mv MV -mvflg ld [-rv RV -rvflg ld] [-file F] [-wait]` | `pair replicate MV [--rv RV] [--file F] [--wait]` |
//! | `iSMrc_separate -mv MV -mvflg ld [-wait]` | `pair separate MV [--wait]` |
//! | `iSMrc_restore -mv MV -mvflg ld -mode protect\|update [-wait]` | `pair restore MV --mode … [--wait]` |
//! | `iSMrc_wait -mv MV -mvflg ld -cond sync\|sep\|rst` | `pair wait MV --cond …` |
//! | `iSMrc_query -mv MV -mvflg ld` | `pair status MV` |
//!
//! ReplicationControl names volumes by logical disk name (`-mvflg ld`) or number; `-unit U`
//! picks the array when the profile has several.

/// A command line using the array CLI's names, rewritten; others are returned unchanged.
pub fn translate(args: Vec<String>) -> Result<Vec<String>, String> {
    // storagecli's global options may come first: `storagecli --profile P auhgwwn …`.
    let mut at = 1;
    while let Some(arg) = args.get(at) {
        match arg.as_str() {
            "--profile" => at += 2,
            "--json" => at += 1,
            a if a.starts_with("--profile=") => at += 1,
            _ => break,
        }
    }
    let Some(command) = args.get(at).cloned() else {
        return Ok(args);
    };
    if !command.starts_with("au") && !command.starts_with("iSMrc_") {
        return Ok(args);
    }
    let mut out = args[..at].to_vec();
    let rest = Options::parse(&args[at + 1..])?;
    if command.starts_with("iSMrc_") {
        out.extend(replication(&command, &rest)?);
        return Ok(out);
    }
    let unit = || {
        rest.value("-unit")
            .ok_or_else(|| format!("{command}: -unit ARRAY is required"))
    };
    match command.as_str() {
        "auunitref" => out.extend(words(&["array", "list"])),
        "auunitadd" => {
            let dir = rest
                .value("-statedir")
                .ok_or_else(|| "auunitadd: give the simulated array's state directory with -statedir DIR (its address, certificate and token are read from it)".to_owned())?;
            out.extend(words(&["array", "add"]));
            out.push(unit()?);
            out.push("--state-dir".into());
            out.push(dir);
        }
        "auhgwwn" => {
            let unit = unit()?;
            if rest.flag("-refer") {
                out.extend(words(&["wwn", "list"]));
                out.push(unit);
            } else {
                let (verb, after) = if rest.flag("-assign") || rest.flag("-set") {
                    ("register", "-permhg")
                } else if rest.flag("-rm") {
                    ("remove", "-permhg")
                } else if rest.flag("-chg") && rest.flag("-rename") {
                    ("nickname", "-rename")
                } else {
                    return Err(
                        "auhgwwn: give one of -refer, -assign, -set, -rm or -chg -rename".into(),
                    );
                };
                let positional = rest.after(after);
                let [controller, letter, wwpn, ..] = positional.as_slice() else {
                    return Err(format!(
                        "auhgwwn: {after} needs CONTROLLER PORT WWPN, e.g. {after} 0 A 50:00:08:70:00:01:00:01"
                    ));
                };
                let group = rest
                    .value("-gno")
                    .ok_or("auhgwwn: -gno GROUP is required")?;
                out.extend(words(&["wwn", verb]));
                out.push(unit);
                out.push(format!("{controller}{letter}"));
                out.push(group);
                out.push(wwpn.clone());
                if verb == "nickname" {
                    let name = rest
                        .value("-newwname")
                        .or_else(|| rest.value("newwname"))
                        .ok_or("auhgwwn -chg -rename: -newwname NICKNAME is required")?;
                    out.push(name);
                }
            }
        }
        "auhgout" => {
            out.extend(words(&["hostgroup", "backup"]));
            out.push(unit()?);
            if let Some(file) = rest.value("-file") {
                out.push("--file".into());
                out.push(file);
            }
        }
        "aulogin" => {
            out.push("login".into());
            out.push(unit()?);
        }
        "aulogout" => {
            out.push("logout".into());
            out.push(unit()?);
        }
        "auaccountenv" => {
            if rest.flag("-rm") {
                out.extend(words(&["account", "remove"]));
                out.push(unit()?);
            } else if rest.flag("-set") {
                let user = rest
                    .value("-uid")
                    .ok_or("auaccountenv -set: -uid USER is required")?;
                let mode = if rest.flag("-password") {
                    "password-protection"
                } else {
                    "account-authentication"
                };
                out.extend(words(&["account", "set"]));
                out.push(unit()?);
                out.extend([
                    "--user".to_owned(),
                    user,
                    "--mode".to_owned(),
                    mode.to_owned(),
                ]);
            } else {
                return Err("auaccountenv: give -set or -rm".into());
            }
        }
        other => {
            return Err(format!(
                "{other}: not an array CLI command storagecli knows; it knows auunitadd, auunitref, auhgwwn, auhgout, aulogin, aulogout and auaccountenv"
            ));
        }
    }
    if rest.flag("-json") || rest.flag("--json") {
        out.push("--json".into());
    }
    Ok(out)
}

/// ReplicationControl's commands.
fn replication(command: &str, rest: &Options) -> Result<Vec<String>, String> {
    for flag in ["-mvflg", "-rvflg"] {
        if let Some(kind) = rest.value(flag)
            && kind != "ld"
        {
            return Err(format!(
                "{command}: {flag} {kind}: volumes are named by logical disk (ld) here; give {flag} ld and the LU's name or number"
            ));
        }
    }
    let mv = || {
        rest.value("-mv")
            .ok_or_else(|| format!("{command}: -mv VOLUME is required"))
    };
    let mut out = vec!["pair".to_owned()];
    let volumes = |out: &mut Vec<String>| -> Result<(), String> {
        match rest.value("-file") {
            Some(file) => out.extend(["--file".to_owned(), file]),
            None => out.push(mv()?),
        }
        if let Some(rv) = rest.value("-rv") {
            out.extend(["--rv".to_owned(), rv]);
        }
        Ok(())
    };
    match command {
        "iSMrc_pair" if rest.flag("-pair") => {
            let rv = rest
                .value("-rv")
                .ok_or("iSMrc_pair -pair: -rv VOLUME is required")?;
            out.extend([
                "set".to_owned(),
                "--mv".to_owned(),
                mv()?,
                "--rv".to_owned(),
                rv,
            ]);
        }
        "iSMrc_pair" if rest.flag("-unpair") => out.extend(["unset".to_owned(), mv()?]),
        "iSMrc_pair" => return Err("iSMrc_pair: give -pair or -unpair".into()),
        "iSMrc_replicate" | "iSMrc_separate" | "iSMrc_restore" => {
            out.push(command.trim_start_matches("iSMrc_").to_owned());
            volumes(&mut out)?;
            if command == "iSMrc_restore" {
                let mode = rest.value("-mode").unwrap_or_else(|| "update".into());
                out.extend(["--mode".to_owned(), mode]);
            }
            if rest.flag("-wait") {
                out.push("--wait".into());
            }
        }
        "iSMrc_wait" => {
            let cond = rest
                .value("-cond")
                .ok_or("iSMrc_wait: -cond sync|sep|rst is required")?;
            out.push("wait".into());
            volumes(&mut out)?;
            out.extend(["--cond".to_owned(), cond]);
        }
        "iSMrc_query" => {
            out.push("status".into());
            volumes(&mut out)?;
        }
        other => {
            return Err(format!(
                "{other}: not a ReplicationControl command storagecli knows; it knows iSMrc_pair, iSMrc_replicate, iSMrc_separate, iSMrc_restore, iSMrc_wait and iSMrc_query"
            ));
        }
    }
    if let Some(unit) = rest.value("-unit") {
        out.extend(["--array".to_owned(), unit]);
    }
    if rest.flag("-json") || rest.flag("--json") {
        out.push("--json".into());
    }
    Ok(out)
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| (*s).to_owned()).collect()
}

/// The array CLI's options: `-name value` pairs and bare flags, in order.
struct Options {
    items: Vec<String>,
}

/// Options that take a value.
const VALUED: &[&str] = &[
    "-unit",
    "-gno",
    "-file",
    "-uid",
    "-newwname",
    "newwname",
    "-statedir",
    "-mv",
    "-rv",
    "-mvflg",
    "-rvflg",
    "-mode",
    "-cond",
];

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut i = 0;
        while i < args.len() {
            if VALUED.contains(&args[i].as_str()) {
                if i + 1 >= args.len() {
                    return Err(format!("{} needs a value", args[i]));
                }
                i += 1;
            }
            i += 1;
        }
        Ok(Self {
            items: args.to_vec(),
        })
    }

    fn value(&self, name: &str) -> Option<String> {
        self.items
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.items.get(i + 1).cloned())
    }

    fn flag(&self, name: &str) -> bool {
        self.items.iter().any(|a| a == name)
    }

    /// The words after `name` up to the next option.
    fn after(&self, name: &str) -> Vec<String> {
        let Some(start) = self.items.iter().position(|a| a == name) else {
            return Vec::new();
        };
        self.items[start + 1..]
            .iter()
            .take_while(|a| !a.starts_with('-') && a.as_str() != "newwname")
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(line: &str) -> Result<String, String> {
        let args: Vec<String> = std::iter::once("storagecli")
            .chain(line.split_whitespace())
            .map(str::to_owned)
            .collect();
        translate(args).map(|a| a[1..].join(" "))
    }

    #[test]
    fn the_seed_command_lines_become_storagecli_subcommands() {
        assert_eq!(t("auunitref").unwrap(), "array list");
        assert_eq!(t("auhgwwn -unit ams1 -refer").unwrap(), "wwn list ams1");
        assert_eq!(
            t("auhgwwn -unit ams1 -assign -permhg 0 A 50:00:08:70:00:01:00:01 -gno 001").unwrap(),
            "wwn register ams1 0A 001 50:00:08:70:00:01:00:01"
        );
        assert_eq!(
            t("auhgwwn -unit ams1 -set -permhg 0 A 5000087000010001 5000087000010002 -gno 001")
                .unwrap(),
            "wwn register ams1 0A 001 5000087000010001"
        );
        assert_eq!(
            t("auhgwwn -unit ams1 -rm -permhg 1 A 5000087000010001 -gno 2").unwrap(),
            "wwn remove ams1 1A 2 5000087000010001"
        );
        assert_eq!(
            t("auhgwwn -unit ams1 -chg -rename 0 A 5000087000010001 -gno 001 -newwname web-mig")
                .unwrap(),
            "wwn nickname ams1 0A 001 5000087000010001 web-mig"
        );
        assert_eq!(
            t("auhgout -unit ams1 -file hg.json").unwrap(),
            "hostgroup backup ams1 --file hg.json"
        );
        assert_eq!(t("aulogin -unit ams1").unwrap(), "login ams1");
        assert_eq!(t("aulogout -unit ams1").unwrap(), "logout ams1");
        assert_eq!(
            t("auaccountenv -set -uid 001 -authentication -unit ams1").unwrap(),
            "account set ams1 --user 001 --mode account-authentication"
        );
        assert_eq!(
            t("auaccountenv -rm -unit ams1").unwrap(),
            "account remove ams1"
        );
        assert_eq!(
            t("wwn list ams1").unwrap(),
            "wwn list ams1",
            "storagecli's own names pass"
        );
        assert_eq!(
            t("--profile p.toml --json auunitref").unwrap(),
            "--profile p.toml --json array list",
            "global options before the array CLI's name stay"
        );
    }

    #[test]
    fn replication_control_command_lines_become_pair_subcommands() {
        assert_eq!(
            t("iSMrc_replicate -mv dev001 -mvflg ld -rv dev002 -rvflg ld").unwrap(),
            "pair replicate dev001 --rv dev002"
        );
        assert_eq!(
            t("iSMrc_separate -mv dev001 -mvflg ld -wait").unwrap(),
            "pair separate dev001 --wait"
        );
        assert_eq!(
            t("iSMrc_restore -file disks.txt -mode protect").unwrap(),
            "pair restore --file disks.txt --mode protect"
        );
        assert_eq!(
            t("iSMrc_wait -file disks.txt -cond sep").unwrap(),
            "pair wait --file disks.txt --cond sep"
        );
        assert_eq!(
            t("iSMrc_pair -pair -mv web-01-boot -mvflg ld -rv web-01-rv -rvflg ld -unit ams1")
                .unwrap(),
            "pair set --mv web-01-boot --rv web-01-rv --array ams1"
        );
        assert_eq!(t("iSMrc_query -mv 0000").unwrap(), "pair status 0000");
        assert!(t("iSMrc_separate -wait").unwrap_err().contains("-mv"));
        assert!(
            t("iSMrc_separate -mv G: -mvflg drv")
                .unwrap_err()
                .contains("-mvflg ld")
        );
        assert!(t("iSMrc_wait -mv dev001").unwrap_err().contains("-cond"));
    }

    #[test]
    fn incomplete_seed_command_lines_say_what_is_missing() {
        assert!(t("auhgwwn -refer").unwrap_err().contains("-unit"));
        assert!(
            t("auhgwwn -unit ams1 -assign -permhg 0 A")
                .unwrap_err()
                .contains("CONTROLLER PORT WWPN")
        );
        assert!(
            t("auhgwwn -unit ams1 -assign -permhg 0 A 5000087000010001")
                .unwrap_err()
                .contains("-gno")
        );
        assert!(t("auhgwwn -unit").unwrap_err().contains("needs a value"));
        assert!(t("aufoo").unwrap_err().contains("auhgwwn"));
    }
}
