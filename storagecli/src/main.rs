//! `storagecli`: the storage command line (see the library's docs for the exit codes).

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lparmover::api::array::{ArrayClientError, AssignWwn, Credentials, RenameWwn, SetSecurity};
use lparmover::model::{ArrayPort, HostGroupNumber, SecurityMode, Wwpn};
use lparmover::ops::arrays::{self, ArrayOpError};
use lparmover::ops::storage::{StorageOpError, wwn_status};
use lparmover::profile::{Profile, ProfileArray};
use lparmover::storage::{export_csv, with_session};
use storagecli::{EXIT_UNREACHABLE, EXIT_WAIT_FAILED, aliases, render};

mod volumes;

/// Storage arrays: host groups, WWPN registration, accounts, exports, LUs and replication pairs.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "The array CLI's names work too: auunitadd, auunitref, auhgwwn, auhgout, aulogin, aulogout, auaccountenv, and ReplicationControl's iSMrc_pair, iSMrc_replicate, iSMrc_separate, iSMrc_restore, iSMrc_wait, iSMrc_query.\nExit status: 0 done, 1 refused by the array, 2 bad command line or value, 3 unreachable, 4 token, login or password refused, 5 a wait ended without the state (fault, timeout, or a state that leads elsewhere)."
)]
struct Cli {
    /// Manager profile holding the registered arrays (default: the manager's default profile).
    #[arg(long, global = true)]
    profile: Option<PathBuf>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Register, list or remove arrays (auunitadd, auunitref).
    Array {
        #[command(subcommand)]
        command: ArrayCommand,
    },
    /// Host groups of an array.
    Hostgroup {
        #[command(subcommand)]
        command: HostgroupCommand,
    },
    /// WWPNs in host groups, and the registration of every vFC.
    Wwn {
        #[command(subcommand)]
        command: WwnCommand,
    },
    /// Log in to a protected array (aulogin): checks the user ID and password (read from
    /// STORAGECLI_PASSWORD or the first line of stdin) and saves them in the profile, mode 0600.
    Login {
        /// Array.
        array: String,
        /// User ID.
        #[arg(long)]
        user: Option<String>,
    },
    /// Forget the saved login of an array (aulogout).
    Logout {
        /// Array.
        array: String,
    },
    /// Password protection and account authentication (auaccountenv).
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Who is logged in to an array's fabric, through which ports.
    Fabric {
        /// Array.
        array: String,
    },
    /// LUs: list, digest, host reads and writes.
    Lu {
        #[command(subcommand)]
        command: volumes::LuCommand,
    },
    /// Replication pairs (seed 002): set, replicate, separate, restore, wait, status.
    Pair {
        #[command(subcommand)]
        command: volumes::PairCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ArrayCommand {
    /// Register an array with the manager: from a simulated array's state directory, or from
    /// its URL, certificate and token.
    Add {
        /// Array name.
        name: String,
        /// State directory of an `hvmsim array` (address, certificate and token are read there).
        #[arg(long, conflicts_with_all = ["url", "cert", "token_file"])]
        state_dir: Option<PathBuf>,
        /// API URL, e.g. https://127.0.4.1:40200.
        #[arg(long, requires_all = ["cert", "token_file"])]
        url: Option<String>,
        /// The array's certificate (PEM) to pin.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// File holding the array's API token.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Every registered array (auunitref).
    List,
    /// Remove an array from the profile.
    Remove {
        /// Array name.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum HostgroupCommand {
    /// Every host group of an array.
    List {
        /// Array.
        array: String,
    },
    /// One host group: its WWPNs, their logins, its LUs.
    Show {
        /// Array.
        array: String,
        /// Port, e.g. 0A.
        port: ArrayPort,
        /// Group number, e.g. 001.
        group: HostGroupNumber,
    },
    /// Back up the host groups to a file (auhgout).
    Backup {
        /// Array.
        array: String,
        /// Where to write it (default: stdout).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum WwnCommand {
    /// Every WWPN in the host groups of an array (auhgwwn -refer).
    List {
        /// Array.
        array: String,
    },
    /// Register a WWPN to a host group (auhgwwn -assign / -set). The array registers any WWPN
    /// it is given; `lparmover wwn register-migration` knows the vfcIDs and checks more.
    Register {
        /// Array.
        array: String,
        /// Port, e.g. 0A.
        port: ArrayPort,
        /// Group number.
        group: HostGroupNumber,
        /// The WWPN.
        wwpn: Wwpn,
        /// Its nickname.
        #[arg(long, default_value = "")]
        nickname: String,
    },
    /// Remove a WWPN from a host group (auhgwwn -rm).
    Remove {
        /// Array.
        array: String,
        /// Port.
        port: ArrayPort,
        /// Group number.
        group: HostGroupNumber,
        /// The WWPN.
        wwpn: Wwpn,
    },
    /// Give a WWPN of a host group a nickname (auhgwwn -chg -rename).
    Nickname {
        /// Array.
        array: String,
        /// Port.
        port: ArrayPort,
        /// Group number.
        group: HostGroupNumber,
        /// The WWPN.
        wwpn: Wwpn,
        /// The nickname (at most 32 characters, no commas).
        nickname: String,
    },
    /// The registration of every vFC of the fleet (tables 7-4 / 7-5).
    Status {
        /// Only this HVM.
        #[arg(long)]
        hvm: Option<String>,
    },
    /// Export the WWPN / migration-WWPN registration of every vFC as CSV.
    ExportCsv {
        /// Only this HVM.
        #[arg(long)]
        hvm: Option<String>,
        /// Where to write it (default: stdout).
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Set password protection or account authentication with one user (auaccountenv -set);
    /// the password is read from STORAGECLI_PASSWORD or the first line of stdin.
    Set {
        /// Array.
        array: String,
        /// User ID.
        #[arg(long)]
        user: String,
        /// The protection.
        #[arg(long, value_parser = parse_mode)]
        mode: SecurityMode,
    },
    /// Remove the protection (auaccountenv -rm).
    Remove {
        /// Array.
        array: String,
    },
}

fn parse_mode(text: &str) -> Result<SecurityMode, String> {
    match text {
        "password-protection" | "password" => Ok(SecurityMode::PasswordProtection),
        "account-authentication" | "account" => Ok(SecurityMode::AccountAuthentication),
        other => Err(format!(
            "{other:?}: use password-protection or account-authentication"
        )),
    }
}

fn profile_path(cli: &Option<PathBuf>) -> PathBuf {
    cli.clone().unwrap_or_else(Profile::default_path)
}

fn load(path: &Path) -> anyhow::Result<Profile> {
    Ok(Profile::load(path)?)
}

fn password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("STORAGECLI_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("no password: set STORAGECLI_PASSWORD or give it on the first line of stdin");
    }
    Ok(p)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn write_out(file: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match file {
        Some(f) => lparmover::fsutil::write_atomic(f, text.as_bytes())
            .with_context(|| format!("cannot write {}", f.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            Ok(out.flush()?)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let path = profile_path(&cli.profile);
    let json = cli.json;
    match cli.command {
        Command::Array { command } => match command {
            ArrayCommand::Add {
                name,
                state_dir,
                url,
                cert,
                token_file,
            } => {
                let entry = match (state_dir, url, cert, token_file) {
                    (Some(dir), ..) => arrays::entry_from_state_dir(&name, &dir)?,
                    (None, Some(url), Some(cert), Some(token)) => ProfileArray {
                        name: name.clone(),
                        url,
                        cert_pem: std::fs::read_to_string(&cert)
                            .with_context(|| format!("cannot read {}", cert.display()))?,
                        token: std::fs::read_to_string(&token)
                            .with_context(|| format!("cannot read {}", token.display()))?
                            .trim()
                            .to_owned(),
                        credentials: None,
                    },
                    _ => bail!("give --state-dir DIR, or --url, --cert and --token-file"),
                };
                let info = arrays::add(&path, entry, Some(&name)).await?;
                println!(
                    "STG-I001 Array {name} ({} {}) registered in {}.",
                    info.model,
                    info.serial,
                    path.display()
                );
            }
            ArrayCommand::List => {
                let rows = arrays::list(&load(&path)?).await;
                if json {
                    print_json(&rows)?;
                } else {
                    let rows: Vec<_> = rows.into_iter().map(|r| (r.name, r.info)).collect();
                    print!("{}", render::arrays(&rows));
                }
            }
            ArrayCommand::Remove { name } => {
                let mut profile = load(&path)?;
                profile.array(&name)?;
                profile.arrays.retain(|a| a.name != name);
                profile.save(&path)?;
                println!("STG-I002 Array {name} removed from {}.", path.display());
            }
        },
        Command::Hostgroup { command } => {
            let profile = load(&path)?;
            match command {
                HostgroupCommand::List { array } => {
                    let a = profile.array(&array)?;
                    let groups = with_session(a, |c| async move { c.host_groups().await }).await?;
                    if json {
                        print_json(&groups)?;
                    } else {
                        print!("{}", render::host_groups(&groups));
                    }
                }
                HostgroupCommand::Show { array, port, group } => {
                    let a = profile.array(&array)?;
                    let (groups, lus, logins) = with_session(a, |c| async move {
                        Ok((
                            c.host_groups().await?,
                            c.lus().await?,
                            c.fabric_logins().await?,
                        ))
                    })
                    .await?;
                    let Some(g) = groups.iter().find(|g| g.port == port && g.number == group)
                    else {
                        return Err(ArrayClientError::Refused {
                            array,
                            error: Box::new(lparmover::api::array::ArrayError::new(
                                lparmover::api::array::ArrayErrorCode::HostGroupNotFound,
                                format!("no host group {group} on port {port}"),
                            )),
                        }
                        .into());
                    };
                    if json {
                        print_json(g)?;
                    } else {
                        print!("{}", render::host_group(g, &lus, &logins));
                    }
                }
                HostgroupCommand::Backup { array, file } => {
                    let a = profile.array(&array)?;
                    let backup = with_session(a, |c| async move { c.backup().await }).await?;
                    let text = serde_json::to_string_pretty(&backup)? + "\n";
                    write_out(file.as_deref(), &text)?;
                    if let Some(f) = file {
                        println!(
                            "STG-I003 {} host groups of {array} backed up to {}.",
                            backup.host_groups.len(),
                            f.display()
                        );
                    }
                }
            }
        }
        Command::Wwn { command } => {
            let profile = load(&path)?;
            match command {
                WwnCommand::List { array } => {
                    let a = profile.array(&array)?;
                    let (groups, logins) = with_session(a, |c| async move {
                        Ok((c.host_groups().await?, c.fabric_logins().await?))
                    })
                    .await?;
                    if json {
                        print_json(&groups)?;
                    } else {
                        print!("{}", render::wwns(&groups, &logins));
                    }
                }
                WwnCommand::Register {
                    array,
                    port,
                    group,
                    wwpn,
                    nickname,
                } => {
                    let a = profile.array(&array)?;
                    let request = AssignWwn { wwpn, nickname };
                    let g =
                        with_session(a, |c| async move { c.assign(port, group, &request).await })
                            .await?;
                    if json {
                        print_json(&g)?;
                    } else {
                        println!(
                            "STG-I101 {wwpn} registered to host group {} of {array}.",
                            g.label()
                        );
                    }
                }
                WwnCommand::Remove {
                    array,
                    port,
                    group,
                    wwpn,
                } => {
                    let a = profile.array(&array)?;
                    let g = with_session(a, |c| async move { c.remove(port, group, wwpn).await })
                        .await?;
                    if json {
                        print_json(&g)?;
                    } else {
                        println!(
                            "STG-I102 {wwpn} removed from host group {} of {array}.",
                            g.label()
                        );
                    }
                }
                WwnCommand::Nickname {
                    array,
                    port,
                    group,
                    wwpn,
                    nickname,
                } => {
                    let a = profile.array(&array)?;
                    let request = RenameWwn { nickname };
                    let g =
                        with_session(
                            a,
                            |c| async move { c.rename(port, group, wwpn, &request).await },
                        )
                        .await?;
                    if json {
                        print_json(&g)?;
                    } else {
                        println!(
                            "STG-I103 {wwpn} in host group {} of {array} renamed.",
                            g.label()
                        );
                    }
                }
                WwnCommand::Status { hvm } => {
                    let status = wwn_status(&profile, hvm.as_deref()).await?;
                    if json {
                        print_json(&status)?;
                    } else {
                        let rows: Vec<Vec<String>> = status
                            .rows
                            .iter()
                            .map(|r| {
                                vec![
                                    format!("{}/{}", r.hvm, r.lpar_name),
                                    r.port.to_string(),
                                    r.vfc_id.get().to_string(),
                                    r.wwpn.to_string(),
                                    r.wwpn_state.label().to_owned(),
                                    r.migration_wwpn.to_string(),
                                    r.migration_state.label().to_owned(),
                                    r.host_groups.join(" "),
                                ]
                            })
                            .collect();
                        print!(
                            "{}",
                            render::table(
                                &[
                                    "LPAR",
                                    "Port",
                                    "vfcID",
                                    "WWPN",
                                    "State (Vfc)",
                                    "Migration WWPN",
                                    "State (Mig)",
                                    "Host groups"
                                ],
                                &rows
                            )
                        );
                        for (h, e) in &status.unreachable {
                            println!("{h}: not answering ({e})");
                        }
                    }
                }
                WwnCommand::ExportCsv { hvm, file } => {
                    let status = wwn_status(&profile, hvm.as_deref()).await?;
                    write_out(file.as_deref(), &export_csv(&status.rows))?;
                    if let Some(f) = file {
                        println!(
                            "STG-I104 registration of {} vFCs exported to {}.",
                            status.rows.len(),
                            f.display()
                        );
                    }
                }
            }
        }
        Command::Login { array, user } => {
            let profile = load(&path)?;
            let user = match user {
                Some(u) => u,
                None => std::env::var("STORAGECLI_USER").map_err(|_| {
                    anyhow::anyhow!("give the user ID with --user USER (or STORAGECLI_USER)")
                })?,
            };
            let credentials = Credentials {
                user,
                password: password()?,
            };
            let user = credentials.user.clone();
            arrays::set_login(&path, &profile, &array, Some(credentials), true).await?;
            println!(
                "STG-I201 Logged in to {array} as {user}; the login is saved in {} (mode 0600) until `storagecli logout {array}`.",
                path.display()
            );
        }
        Command::Logout { array } => {
            let profile = load(&path)?;
            arrays::set_login(&path, &profile, &array, None, false).await?;
            println!("STG-I202 Logged out of {array}; no login is saved for it any more.");
        }
        Command::Account { command } => {
            let profile = load(&path)?;
            match command {
                AccountCommand::Set { array, user, mode } => {
                    let a = profile.array(&array)?.clone();
                    let credentials = Credentials {
                        user,
                        password: password()?,
                    };
                    let request = SetSecurity {
                        mode,
                        accounts: vec![credentials.clone()],
                    };
                    let info =
                        with_session(&a, |c| async move { c.set_security(&request).await }).await?;
                    arrays::set_login(&path, &profile, &array, Some(credentials), true).await?;
                    println!(
                        "STG-I301 {} set on {array}; the new login is saved in {}.",
                        info.security.label(),
                        path.display()
                    );
                }
                AccountCommand::Remove { array } => {
                    let a = profile.array(&array)?.clone();
                    with_session(&a, |c| async move { c.remove_security().await }).await?;
                    arrays::set_login(&path, &profile, &array, None, false).await?;
                    println!("STG-I302 Protection removed from {array}.");
                }
            }
        }
        Command::Lu { command } => volumes::run_lu(&load(&path)?, command, json).await?,
        Command::Pair { command } => volumes::run_pair(&load(&path)?, command, json).await?,
        Command::Fabric { array } => {
            let profile = load(&path)?;
            let a = profile.array(&array)?;
            let logins = with_session(a, |c| async move { c.fabric_logins().await }).await?;
            if json {
                print_json(&logins)?;
            } else {
                print!("{}", render::logins(&logins));
            }
        }
    }
    Ok(())
}

/// The exit code for an error: the array's catalogue row when it refused.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(volumes::WaitFailed(wait)) = e.downcast_ref::<volumes::WaitFailed>() {
        return match wait {
            lparmover::replication::PairWaitError::Array(ArrayClientError::Unreachable {
                ..
            }) => EXIT_UNREACHABLE,
            _ => EXIT_WAIT_FAILED,
        };
    }
    let array = e
        .downcast_ref::<ArrayClientError>()
        .or_else(|| {
            e.downcast_ref::<StorageOpError>().and_then(|s| match s {
                StorageOpError::Array(a) => Some(a),
                _ => None,
            })
        })
        .or_else(|| {
            e.downcast_ref::<ArrayOpError>().and_then(|s| match s {
                ArrayOpError::Array(a) => Some(a),
                _ => None,
            })
        });
    if let Some(ArrayOpError::Profile(_) | ArrayOpError::Invalid(_)) = e.downcast_ref() {
        return 2;
    }
    match array {
        Some(ArrayClientError::Refused { error, .. }) => error.code.entry().exit_code,
        Some(ArrayClientError::Unreachable { .. }) => EXIT_UNREACHABLE,
        Some(ArrayClientError::Protocol { .. }) => 1,
        None => match e.downcast_ref::<StorageOpError>() {
            Some(StorageOpError::Hvm(_)) => EXIT_UNREACHABLE,
            Some(_) => 1,
            None if e
                .downcast_ref::<lparmover::profile::ProfileError>()
                .is_some() =>
            {
                2
            }
            None => 1,
        },
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STORAGECLI_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match aliases::translate(std::env::args().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("storagecli: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("storagecli: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storagecli: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}
