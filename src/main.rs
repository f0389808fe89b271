//! The `flagbase` command line: parses arguments, builds the configuration,
//! and hands over to the library. Exit codes: 0 success, 1 runtime failure,
//! 2 usage or configuration error; every failure is one line on stderr.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use flagbase::config::{Config, Sources};
use flagbase::model::Role;

#[derive(Parser)]
#[command(name = "flagbase", version = flagbase::version::VERSION, about = "Feature flags, first-class: one binary, local-first.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Configuration file (YAML). Optional: every key has a default.
    #[arg(
        short,
        long,
        global = true,
        env = "FLAGBASE_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Shorthand for --log-level debug.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[arg(short = 'l', long, global = true, value_name = "LEVEL")]
    log_level: Option<LogLevel>,
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run Flagbase: HTTP API, store and everything else, in one process.
    Start(StartArgs),
    /// Print the version, git commit and build date.
    Version {
        /// Only the version number.
        #[arg(short, long)]
        short: bool,
    },
    /// Manage users directly in the database (the server may be running).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Args)]
struct StartArgs {
    /// Address to listen on (server.host).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one (server.port).
    #[arg(short, long)]
    port: Option<String>,
    /// Set any configuration key, e.g. --set iam.token_ttl=1h (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user with a role.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (preferred: keeps it out of `ps`).
        #[arg(
            long,
            conflicts_with = "password",
            required_unless_present = "password"
        )]
        password_stdin: bool,
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        role: Role,
    },
}

/// A failure and the exit code it deserves.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl ToString) -> Self {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }
    fn runtime(message: impl ToString) -> Self {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // One line, whatever the source error's text looks like, so
            // supervisors and scripts can rely on the last line.
            let message: Vec<&str> = f
                .message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", message.join("; "));
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let mut flags = Vec::new();
    let level = if cli.verbose {
        Some(LogLevel::Debug)
    } else {
        cli.log_level
    };
    if let Some(level) = level {
        let name = level
            .to_possible_value()
            .expect("named")
            .get_name()
            .to_string();
        flags.push(("log.level".to_string(), name, "--log-level".to_string()));
    }
    if let Some(format) = cli.log_format {
        let name = format
            .to_possible_value()
            .expect("named")
            .get_name()
            .to_string();
        flags.push(("log.format".to_string(), name, "--log-format".to_string()));
    }
    match cli.command {
        Command::Version { short } => {
            if short {
                println!("{}", flagbase::version::VERSION);
            } else {
                println!("{}", flagbase::version::long());
            }
            Ok(())
        }
        Command::Start(args) => {
            if let Some(host) = args.host {
                flags.push(("server.host".into(), host, "--host".into()));
            }
            if let Some(port) = args.port {
                flags.push(("server.port".into(), port, "--port".into()));
            }
            for pair in args.set {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| Failure::usage(format!("--set {pair}: expected KEY=VALUE")))?;
                flags.push((
                    key.trim().to_string(),
                    value.to_string(),
                    format!("--set {key}"),
                ));
            }
            let config = load_config(cli.config, flags)?;
            runtime()?
                .block_on(flagbase::server::start(config))
                .map_err(Failure::runtime)
        }
        Command::User(UserCommand::Create {
            email,
            password_stdin,
            password,
            role,
        }) => {
            let config = load_config(cli.config, flags)?;
            let password = if password_stdin {
                read_password_from_stdin()?
            } else {
                password.unwrap_or_default()
            };
            runtime()?.block_on(create_user(config, &email, &password, role))
        }
    }
}

/// Builds the configuration and sets up logging from it; what the loader
/// ignored is logged once logging exists.
fn load_config(
    file: Option<PathBuf>,
    flags: Vec<(String, String, String)>,
) -> Result<Config, Failure> {
    let (config, notes) = Config::load_noting(&Sources {
        file: file.as_deref(),
        // vars_os: a variable that is not UTF-8 must not panic the CLI; it
        // cannot be one of ours, whose names and values are text.
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect(),
        flags,
    })
    .map_err(Failure::usage)?;
    flagbase::logging::init(&config.log.level, &config.log.format);
    for note in notes {
        tracing::warn!("{note}");
    }
    Ok(config)
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))
}

fn read_password_from_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| {
            Failure::usage(format!("--password-stdin: cannot read standard input: {e}"))
        })?;
    Ok(text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text)
        .to_string())
}

async fn create_user(
    config: Config,
    email: &str,
    password: &str,
    role: Role,
) -> Result<(), Failure> {
    use flagbase::iam::{normalize_email, Passwords};
    use flagbase::storage::sqlite::{SqliteOptions, SqliteStore};
    use flagbase::storage::Store;

    let email = normalize_email(email).map_err(|e| Failure::usage(format!("--{e}")))?;
    Passwords::check_policy(password).map_err(|e| Failure::usage(format!("--{e}")))?;
    let options = SqliteOptions {
        path: config.database.path.clone(),
        readers: 1,
        busy_timeout: config.database.busy_timeout.get(),
    };
    let store = SqliteStore::open(&options)
        .map_err(|e| Failure::runtime(format!("cannot open database {e}")))?;
    let hash = Passwords::new(1)
        .hash(password)
        .await
        .map_err(Failure::runtime)?;
    let created = store
        .create_user(
            flagbase::model::NewUser {
                email,
                password_hash: hash,
                role,
            },
            "cli",
        )
        .await;
    store.close().await;
    let user = created.map_err(Failure::runtime)?.value;
    println!("created {} user {} (id {})", user.role, user.email, user.id);
    Ok(())
}
