//! `storagecli lu …` and `storagecli pair …`: LUs and replication pairs (seed 002), with the
//! seed's output (`Replicate Start` … `Replicate Normal End` with time stamps).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::Subcommand;
use lparmover::api::array::{
    ArrayClient, LuNumber, MAX_LU_IO, Pair, RestoreMode, RestoreRequest, SetPair, WaitCondition,
};
use lparmover::profile::{Profile, ProfileArray};
use lparmover::replication::{resolve_lu, wait_for_pair};
use lparmover::storage::with_session;
use storagecli::render;

/// How long `--wait` waits unless told.
const DEFAULT_WAIT_S: u64 = 600;

#[derive(Subcommand, Debug)]
pub enum LuCommand {
    /// Every LU of an array, and the pair each is in.
    List {
        /// Array (default: the profile's only array).
        #[arg(long)]
        array: Option<String>,
    },
    /// The BLAKE3 digest of an LU's content (to compare an MV with its RV).
    Digest {
        /// LU number or name.
        lu: String,
        /// Array.
        #[arg(long)]
        array: Option<String>,
    },
    /// Write to an LU (as a host would; refused on an RV that is Not Ready).
    Write {
        /// LU number or name.
        lu: String,
        /// Byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Write this file's bytes (at most 1 MiB).
        #[arg(long, conflicts_with = "text")]
        file: Option<PathBuf>,
        /// Write this text.
        #[arg(long)]
        text: Option<String>,
        /// Array.
        #[arg(long)]
        array: Option<String>,
    },
    /// Read from an LU to stdout or a file.
    Read {
        /// LU number or name.
        lu: String,
        /// Byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Bytes (at most 1 MiB).
        #[arg(long)]
        length: u64,
        /// Where to write them (default: stdout).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Array.
        #[arg(long)]
        array: Option<String>,
    },
}

/// Which pairs an operation acts on.
#[derive(clap::Args, Debug)]
pub struct Volumes {
    /// MVs (LU number or name), e.g. web-01-boot.
    mv: Vec<String>,
    /// Every pair of the array.
    #[arg(long, conflicts_with = "file")]
    all: bool,
    /// A replication operation file: one `MV [RV]` per line (`Id:` prefixes and `#` comments as
    /// in the seed's disks.txt).
    #[arg(long)]
    file: Option<PathBuf>,
    /// The RV the pair must have (a check, for scripts written with -rv).
    #[arg(long)]
    rv: Option<String>,
    /// Array (default: the profile's only array).
    #[arg(long)]
    array: Option<String>,
}

/// Waiting for the end of an operation.
#[derive(clap::Args, Debug)]
pub struct Waiting {
    /// Wait until the operation is done and print its end.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = DEFAULT_WAIT_S)]
    timeout: u64,
}

#[derive(Subcommand, Debug)]
pub enum PairCommand {
    /// Every pair: state, RV access, copy progress, difference, times.
    List {
        /// Array.
        #[arg(long)]
        array: Option<String>,
    },
    /// One pair in detail (iSMrc_query).
    Status {
        #[command(flatten)]
        volumes: Volumes,
    },
    /// Set an MV and an RV of the same size as a pair (iSMrc_pair -pair).
    Set {
        /// MV (LU number or name).
        #[arg(long)]
        mv: String,
        /// RV (LU number or name); it must be presented to no host group.
        #[arg(long)]
        rv: String,
        /// Array.
        #[arg(long)]
        array: Option<String>,
    },
    /// Cancel a separated pair (iSMrc_pair -unpair).
    Unset {
        /// MV.
        mv: String,
        /// Array.
        #[arg(long)]
        array: Option<String>,
    },
    /// Copy MV → RV (the difference; everything the first time) and keep the RV following
    /// the MV (iSMrc_replicate). The RV is Not Ready until the pair is separated.
    Replicate {
        #[command(flatten)]
        volumes: Volumes,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Separate the RV from the MV: it keeps the MV's content of this moment and becomes
    /// Read/Write (iSMrc_separate).
    Separate {
        #[command(flatten)]
        volumes: Volumes,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Copy RV → MV (iSMrc_restore); `--mode protect` keeps the RV as it is and separates when
    /// done.
    Restore {
        #[command(flatten)]
        volumes: Volumes,
        /// update (the RV follows the MV afterwards) or protect.
        #[arg(long, default_value = "update")]
        mode: RestoreMode,
        #[command(flatten)]
        waiting: Waiting,
    },
    /// Wait until pairs reach a state (iSMrc_wait): sync (rpl/sync), sep (sep/sync) or rst
    /// (rst/sync).
    Wait {
        #[command(flatten)]
        volumes: Volumes,
        /// The state.
        #[arg(long)]
        cond: WaitCondition,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = DEFAULT_WAIT_S)]
        timeout: u64,
    },
}

/// A wait that ended without the state (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WaitFailed(pub lparmover::replication::PairWaitError);

fn array_of<'p>(profile: &'p Profile, name: Option<&str>) -> anyhow::Result<&'p ProfileArray> {
    match name {
        Some(n) => Ok(profile.array(n)?),
        None => match profile.arrays.as_slice() {
            [only] => Ok(only),
            [] => bail!("the profile has no array; register one with `storagecli array add`"),
            more => bail!(
                "the profile has {} arrays ({}); say which with --array NAME",
                more.len(),
                more.iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

/// Reads a replication operation file: `(MV, RV)` per line.
fn operation_file(path: &Path) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the operation file {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line
            .split_whitespace()
            .map(|w| w.strip_prefix("Id:").unwrap_or(w))
            .filter(|w| !w.is_empty())
            .collect();
        match words.as_slice() {
            [mv] => out.push(((*mv).to_owned(), None)),
            [mv, rv] => out.push(((*mv).to_owned(), Some((*rv).to_owned()))),
            _ => bail!(
                "{}:{}: give `MV [RV]` (or `Id: MV  Id: RV`), not {line:?}",
                path.display(),
                n + 1
            ),
        }
    }
    if out.is_empty() {
        bail!("{} names no volume", path.display());
    }
    Ok(out)
}

/// The MVs `volumes` names, checked against the array's LUs and pairs.
async fn select(client: &ArrayClient, volumes: &Volumes) -> anyhow::Result<Vec<Pair>> {
    let lus = client.lus().await?;
    let pairs = client.pairs().await?;
    let wanted: Vec<(String, Option<String>)> = if volumes.all {
        pairs.iter().map(|p| (p.mv.to_string(), None)).collect()
    } else if let Some(file) = &volumes.file {
        operation_file(file)?
    } else {
        volumes
            .mv
            .iter()
            .map(|m| (m.clone(), volumes.rv.clone()))
            .collect()
    };
    if wanted.is_empty() {
        bail!("name the MV (e.g. web-01-boot), or give --all or --file FILE");
    }
    let mut out = Vec::new();
    for (mv, rv) in wanted {
        let mv_number = resolve_lu(&lus, &mv).map_err(anyhow::Error::msg)?;
        let Some(pair) = pairs.iter().find(|p| p.mv == mv_number) else {
            // Let the array say why (it names the MV when this is an RV).
            client.pair(mv_number).await?;
            bail!("LU {mv} is in no pair");
        };
        if let Some(rv) = rv {
            let rv_number = resolve_lu(&lus, &rv).map_err(anyhow::Error::msg)?;
            if rv_number != pair.rv {
                bail!(
                    "MV {} is paired with RV {} {}, not {rv}; nothing was started",
                    pair.mv,
                    pair.rv,
                    pair.rv_name
                );
            }
        }
        out.push(pair.clone());
    }
    Ok(out)
}

/// The names the seed gives an operation: start title, progress word, wait condition.
struct Operation {
    name: &'static str,
    progress: &'static str,
}

async fn with_wait_flag(
    op: &Operation,
    condition: Option<WaitCondition>,
    started: Vec<Pair>,
    client: &ArrayClient,
    timeout: u64,
    json: bool,
) -> anyhow::Result<()> {
    if !json {
        for p in &started {
            print!(
                "{}",
                render::operation(&format!("{} Start", op.name), Utc::now(), p)
            );
        }
    }
    let Some(condition) = condition else {
        if json {
            println!("{}", serde_json::to_string_pretty(&started)?);
        }
        return Ok(());
    };
    let mut ended = Vec::new();
    for p in started {
        if !json {
            print!("{}", op.progress);
        }
        let mut polls = 0u32;
        let result = wait_for_pair(
            client,
            p.mv,
            condition,
            Duration::from_secs(timeout),
            |_| {
                polls += 1;
                if !json && polls.is_multiple_of(5) {
                    print!(".");
                    let _ = std::io::stdout().flush();
                }
            },
        )
        .await;
        match result {
            Ok(done) => {
                if !json {
                    println!(".");
                    print!(
                        "{}",
                        render::operation(
                            &format!("{} Normal End", op.name),
                            done.ended_at.unwrap_or_else(Utc::now),
                            &done
                        )
                    );
                }
                ended.push(done);
            }
            Err(e) => {
                if !json {
                    println!();
                    print!(
                        "{}",
                        render::operation(&format!("{} Abnormal End", op.name), Utc::now(), &p)
                    );
                }
                return Err(WaitFailed(e).into());
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&ended)?);
    }
    Ok(())
}

/// Runs `storagecli lu …`.
pub async fn run_lu(profile: &Profile, command: LuCommand, json: bool) -> anyhow::Result<()> {
    let array = match &command {
        LuCommand::List { array }
        | LuCommand::Digest { array, .. }
        | LuCommand::Write { array, .. }
        | LuCommand::Read { array, .. } => array.clone(),
    };
    let a = array_of(profile, array.as_deref())?;
    with_session(
        a,
        |c| async move { Ok(lu_command(&c, command, json).await) },
    )
    .await?
}

async fn lu_command(client: &ArrayClient, command: LuCommand, json: bool) -> anyhow::Result<()> {
    match command {
        LuCommand::List { .. } => {
            let (lus, pairs) = (client.lus().await?, client.pairs().await?);
            if json {
                print_json(&lus)?;
            } else {
                print!("{}", render::lus(&lus, &pairs));
            }
        }
        LuCommand::Digest { lu, .. } => {
            let digest = client.lu_digest(lu_number(client, &lu).await?).await?;
            if json {
                print_json(&digest)?;
            } else {
                println!(
                    "{}  LU {} ({} MiB)",
                    digest.blake3, digest.lu, digest.size_mib
                );
            }
        }
        LuCommand::Write {
            lu,
            offset,
            file,
            text,
            ..
        } => {
            let data = match (file, text) {
                (Some(f), None) => {
                    std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?
                }
                (None, Some(t)) => t.into_bytes(),
                _ => bail!("give what to write with --file FILE or --text TEXT"),
            };
            if data.is_empty() || data.len() as u64 > MAX_LU_IO {
                bail!(
                    "a write is 1 to {MAX_LU_IO} bytes; this one has {}",
                    data.len()
                );
            }
            let bytes = data.len();
            let number = lu_number(client, &lu).await?;
            client.lu_write(number, offset, data).await?;
            println!("STG-I401 {bytes} bytes written to LU {number} at offset {offset}.");
        }
        LuCommand::Read {
            lu,
            offset,
            length,
            file,
            ..
        } => {
            let data = client
                .lu_read(lu_number(client, &lu).await?, offset, length)
                .await?;
            match file {
                Some(f) => lparmover::fsutil::write_atomic(&f, &data)
                    .with_context(|| format!("cannot write {}", f.display()))?,
                None => std::io::stdout().lock().write_all(&data)?,
            }
        }
    }
    Ok(())
}

fn print_json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The LU `text` names.
async fn lu_number(client: &ArrayClient, text: &str) -> anyhow::Result<LuNumber> {
    let lus = client.lus().await?;
    resolve_lu(&lus, text).map_err(anyhow::Error::msg)
}

/// Runs `storagecli pair …`. A login session lasts the whole command, waits included.
pub async fn run_pair(profile: &Profile, command: PairCommand, json: bool) -> anyhow::Result<()> {
    let array = match &command {
        PairCommand::List { array }
        | PairCommand::Set { array, .. }
        | PairCommand::Unset { array, .. } => array.clone(),
        PairCommand::Status { volumes }
        | PairCommand::Replicate { volumes, .. }
        | PairCommand::Separate { volumes, .. }
        | PairCommand::Restore { volumes, .. }
        | PairCommand::Wait { volumes, .. } => volumes.array.clone(),
    };
    let a = array_of(profile, array.as_deref())?;
    // The inner result carries errors that are not the array's, so they keep their own exit
    // code.
    with_session(
        a,
        |c| async move { Ok(pair_command(&c, command, json).await) },
    )
    .await?
}

async fn pair_command(
    client: &ArrayClient,
    command: PairCommand,
    json: bool,
) -> anyhow::Result<()> {
    match command {
        PairCommand::List { .. } => {
            let pairs = client.pairs().await?;
            if json {
                print_json(&pairs)?;
            } else {
                print!("{}", render::pairs(&pairs));
            }
        }
        PairCommand::Status { volumes } => {
            let pairs = select(client, &volumes).await?;
            if json {
                print_json(&pairs)?;
            } else {
                for (i, p) in pairs.iter().enumerate() {
                    if i > 0 {
                        println!();
                    }
                    print!("{}", render::pair(p));
                }
            }
        }
        PairCommand::Set { mv, rv, .. } => {
            let lus = client.lus().await?;
            let request = SetPair {
                mv: resolve_lu(&lus, &mv).map_err(anyhow::Error::msg)?,
                rv: resolve_lu(&lus, &rv).map_err(anyhow::Error::msg)?,
            };
            let pair = client.set_pair(&request).await?;
            if json {
                print_json(&pair)?;
            } else {
                println!(
                    "STG-I501 MV {} {} and RV {} {} set as a pair (Separated).",
                    pair.mv, pair.mv_name, pair.rv, pair.rv_name
                );
            }
        }
        PairCommand::Unset { mv, .. } => {
            let lus = client.lus().await?;
            let mv = resolve_lu(&lus, &mv).map_err(anyhow::Error::msg)?;
            client.unset_pair(mv).await?;
            println!("STG-I502 The pair of MV {mv} is cancelled.");
        }
        PairCommand::Replicate { volumes, waiting } => {
            let mut started = Vec::new();
            for p in select(client, &volumes).await? {
                started.push(client.replicate(p.mv).await?);
            }
            let op = Operation {
                name: "Replicate",
                progress: "Replicating",
            };
            let condition = waiting.wait.then_some(WaitCondition::Sync);
            with_wait_flag(&op, condition, started, client, waiting.timeout, json).await?;
        }
        PairCommand::Separate { volumes, waiting } => {
            let mut started = Vec::new();
            for p in select(client, &volumes).await? {
                started.push(client.separate(p.mv).await?);
            }
            let op = Operation {
                name: "Separate",
                progress: "Separating",
            };
            let condition = waiting.wait.then_some(WaitCondition::Sep);
            with_wait_flag(&op, condition, started, client, waiting.timeout, json).await?;
        }
        PairCommand::Restore {
            volumes,
            mode,
            waiting,
        } => {
            let mut started = Vec::new();
            for p in select(client, &volumes).await? {
                started.push(client.restore(p.mv, &RestoreRequest { mode }).await?);
            }
            let op = Operation {
                name: "Restore",
                progress: "Restoring",
            };
            let condition = waiting.wait.then_some(match mode {
                RestoreMode::Update => WaitCondition::Rst,
                RestoreMode::Protect => WaitCondition::Sep,
            });
            with_wait_flag(&op, condition, started, client, waiting.timeout, json).await?;
        }
        PairCommand::Wait {
            volumes,
            cond,
            timeout,
        } => {
            let pairs = select(client, &volumes).await?;
            if !json {
                println!(
                    "Waiting for the {} State.",
                    match cond {
                        WaitCondition::Sync => "Replicate (rpl/sync)",
                        WaitCondition::Sep => "Separated",
                        WaitCondition::Rst => "Restore (rst/sync)",
                    }
                );
            }
            let mut ended = Vec::new();
            for p in pairs {
                let done = wait_for_pair(client, p.mv, cond, Duration::from_secs(timeout), |_| {})
                    .await
                    .map_err(WaitFailed)?;
                if !json {
                    print!(
                        "{}",
                        render::operation("Wait Normal End", Utc::now(), &done)
                    );
                }
                ended.push(done);
            }
            if json {
                print_json(&ended)?;
            }
        }
    }
    Ok(())
}
