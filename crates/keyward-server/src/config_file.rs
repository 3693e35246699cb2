//! `--config FILE`: `keyward serve`'s settings in a TOML file.
//!
//! A key is the long flag without its dashes (`database-timeout-secs = 5` for
//! `--database-timeout-secs 5`), and takes the TOML type of the flag's value: a string, an
//! integer, or `true`/`false` for a switch. The keys are read off the clap [`Command`], not off a
//! list, so every flag `keyward serve` gains is a key of the file at once.
//!
//! Precedence is clap's own: each value from the file becomes the default of its argument, so a
//! `KEYWARD_*` variable beats the file and a flag beats both. Each value is run through its
//! argument's value parser first, so the file is refused with the key named, as clap would refuse
//! the flag. The operator commands (`root-key`, `plans ...`) read the same file: they take the
//! settings they share with `serve` (database, key format, pepper) and pass over the rest.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::builder::Resettable;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The id of the `--config` argument itself.
const CONFIG_ARG: &str = "config";

/// A config file, checked against the settings of one command.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    path: PathBuf,
    /// Key -> the values as clap would read them from the command line.
    settings: BTreeMap<String, Vec<String>>,
}

/// The command line, parsed with the `--config` file (if any) as defaults.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) matches: ArgMatches,
    pub(crate) file: Option<ConfigFile>,
}

/// Parses `args` with `command()`; when the subcommand run has a `--config` file, parses again
/// with the file's settings as defaults. The file may hold any setting of the subcommand
/// `schema` (`serve`), and is refused with a message naming the key otherwise.
pub(crate) fn parse_args(
    command: impl Fn() -> Command,
    schema: &str,
    args: Vec<OsString>,
) -> anyhow::Result<Parsed> {
    let matches = command().try_get_matches_from(&args).unwrap_or_else(|e| e.exit());
    let (path, leaf) = subcommand_path(&matches);
    let config = leaf.try_get_one::<PathBuf>(CONFIG_ARG).ok().flatten().cloned();
    let Some(config) = config else {
        return Ok(Parsed { matches, file: None });
    };
    let schema = command()
        .find_subcommand(schema)
        .cloned()
        .with_context(|| format!("no `{schema}` command to read the settings of"))?;
    let file = ConfigFile::load(&config, &schema)?;
    let matches =
        with_defaults(command(), &path, &file).try_get_matches_from(&args).unwrap_or_else(|e| e.exit());
    Ok(Parsed { matches, file: Some(file) })
}

impl ConfigFile {
    /// Reads and checks `path` against the settings of `schema`.
    pub(crate) fn load(path: &Path, schema: &Command) -> anyhow::Result<Self> {
        let shown = path.display();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the config file {shown}"))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            // toml's own rendering quotes the offending line, which may hold a secret.
            let at = e.span().map(|s| line_and_column(&text, s.start)).unwrap_or_default();
            anyhow::anyhow!("{shown}{at}: not valid TOML: {}", e.message().trim().replace('\n', "; "))
        })?;
        let known: Vec<&Arg> = schema.get_arguments().filter(|a| is_setting(a)).collect();
        // Each value is tried alone, on the flag, with no variable and no other flag in the way.
        let probe = schema
            .clone()
            .no_binary_name(true)
            .mut_args(|a| a.env(Resettable::Reset).required(false).requires(Resettable::Reset));
        let mut settings = BTreeMap::new();
        for (key, value) in &table {
            if key == CONFIG_ARG {
                bail!("{shown}: `{key}` names the file itself; it cannot be set in one");
            }
            let Some(arg) = known.iter().find(|a| a.get_long() == Some(key.as_str())) else {
                bail!("{shown}: unknown key `{key}`{}", suggestion(key, &known));
            };
            let values = raw_values(arg, value).map_err(|expected| {
                anyhow::anyhow!(
                    "{shown}: `{key}` must be {expected}, not {} {}",
                    article(value),
                    value.type_str()
                )
            })?;
            if let Err(e) = probe.clone().try_get_matches_from(flag_args(arg, &values)) {
                let value = if is_secret(arg) { String::new() } else { format!(" {value}") };
                bail!("{shown}: `{key}` has an invalid value{value}: {}", reason(&e));
            }
            settings.insert(key.clone(), values);
        }
        Ok(ConfigFile { path: path.to_owned(), settings })
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether `arg` is a setting a file may hold: a named option or switch, not `--config`,
/// `--help` or `--version`, nor a required argument (such as `root-key --reset`).
fn is_setting(arg: &Arg) -> bool {
    arg.get_long().is_some()
        && arg.get_id() != CONFIG_ARG
        && !arg.is_required_set()
        && matches!(
            arg.get_action(),
            ArgAction::Set | ArgAction::Append | ArgAction::SetTrue | ArgAction::SetFalse
        )
}

/// Values whose variable is kept out of `--help` are kept out of messages and listings too.
fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// The TOML type a setting takes.
#[derive(Debug, Clone, Copy)]
enum ValueKind {
    Switch,
    Integer,
    Float,
    Text,
}

impl ValueKind {
    fn of(arg: &Arg) -> Self {
        use std::any::TypeId;
        if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            return ValueKind::Switch;
        }
        let ty = arg.get_value_parser().type_id();
        let integers = [
            TypeId::of::<u8>(),
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<usize>(),
            TypeId::of::<i8>(),
            TypeId::of::<i16>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<isize>(),
        ];
        if integers.iter().any(|t| ty == *t) {
            ValueKind::Integer
        } else if ty == TypeId::of::<f64>() || ty == TypeId::of::<f32>() {
            ValueKind::Float
        } else if ty == TypeId::of::<bool>() {
            ValueKind::Switch
        } else {
            ValueKind::Text
        }
    }

    fn expected(self) -> &'static str {
        match self {
            ValueKind::Switch => "true or false",
            ValueKind::Integer => "an integer",
            ValueKind::Float => "a number",
            ValueKind::Text => "a string",
        }
    }

    fn expected_many(self) -> &'static str {
        match self {
            ValueKind::Switch => "an array of true or false",
            ValueKind::Integer => "an array of integers",
            ValueKind::Float => "an array of numbers",
            ValueKind::Text => "an array of strings",
        }
    }

    /// One TOML value as clap reads it from the command line.
    fn raw(self, value: &toml::Value) -> Option<String> {
        use toml::Value as V;
        match (self, value) {
            (ValueKind::Switch, V::Boolean(b)) => Some(b.to_string()),
            (ValueKind::Integer | ValueKind::Float, V::Integer(i)) => Some(i.to_string()),
            (ValueKind::Float, V::Float(f)) => Some(f.to_string()),
            (ValueKind::Text, V::String(s)) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Whether `arg` takes a list (a TOML array in the file).
fn takes_many(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append) || arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// The value(s) of `arg` in the file as command-line strings, or what was expected instead.
fn raw_values(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, &'static str> {
    let kind = ValueKind::of(arg);
    match value {
        toml::Value::Array(items) if takes_many(arg) => {
            items.iter().map(|v| kind.raw(v)).collect::<Option<_>>().ok_or(kind.expected_many())
        }
        v => kind.raw(v).map(|s| vec![s]).ok_or(kind.expected()),
    }
}

/// The command line that gives `arg` these values.
fn flag_args(arg: &Arg, values: &[String]) -> Vec<String> {
    let long = arg.get_long().unwrap_or_default();
    match arg.get_action() {
        // A switch has no value to check (and TOML has already typed it).
        ArgAction::SetTrue | ArgAction::SetFalse => Vec::new(),
        _ => values.iter().map(|v| format!("--{long}={v}")).collect(),
    }
}

/// Why clap refused a value, without clap's usage lines.
fn reason(e: &clap::Error) -> String {
    if e.kind() == ErrorKind::InvalidValue
        && let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue)
    {
        return format!("expected one of {}", valid.join(", "));
    }
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    let rendered = e.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_owned()
}

/// A hint for a key that is a known one spelt with underscores or dashes in front.
fn suggestion(key: &str, known: &[&Arg]) -> String {
    let normal = key.trim_start_matches('-').replace('_', "-");
    if known.iter().any(|a| a.get_long() == Some(normal.as_str())) {
        format!(" (did you mean `{normal}`?)")
    } else {
        " (the keys are `keyward serve`'s long flags without dashes, e.g. `database-timeout-secs`; see \
         `keyward serve --help`)"
            .to_owned()
    }
}

fn article(value: &toml::Value) -> &'static str {
    if value.type_str().starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

fn line_and_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(":{line}:{column}")
}

/// The names of the subcommands run, outermost first, and the innermost's matches.
fn subcommand_path(matches: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let mut path = Vec::new();
    let mut leaf = matches;
    while let Some((name, sub)) = leaf.subcommand() {
        path.push(name.to_owned());
        leaf = sub;
    }
    (path, leaf)
}

/// `command` with the file's settings as the defaults of the subcommand at `path`, for those
/// settings it has.
fn with_defaults(command: Command, path: &[String], file: &ConfigFile) -> Command {
    match path.split_first() {
        Some((name, rest)) => command.mut_subcommand(name, |sub| with_defaults(sub, rest, file)),
        None => file.settings.iter().fold(command, |command, (key, values)| {
            let id = command
                .get_arguments()
                .find(|a| is_setting(a) && a.get_long() == Some(key.as_str()))
                .map(|a| a.get_id().clone());
            match id {
                Some(id) => command.mut_arg(id, |a| a.default_values(values.clone())),
                None => command,
            }
        }),
    }
}

/// The settings `command` runs with under `matches`, as a TOML document: each on a line with
/// where its value came from, secrets redacted.
pub(crate) fn effective_settings(
    command: &Command,
    matches: &ArgMatches,
    file: Option<&ConfigFile>,
) -> String {
    let lines: Vec<(String, String)> = command
        .get_arguments()
        .filter(|a| is_setting(a))
        .map(|arg| {
            let id = arg.get_id().as_str();
            let key = arg.get_long().unwrap_or(id);
            let values: Vec<String> = matches
                .get_raw(id)
                .into_iter()
                .flatten()
                .map(|v| shown_value(arg, &v.to_string_lossy()))
                .collect();
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => format!("--{key}"),
                Some(ValueSource::EnvVariable) => arg
                    .get_env()
                    .map_or_else(|| "environment".to_owned(), |e| e.to_string_lossy().into_owned()),
                Some(ValueSource::DefaultValue) => match file {
                    Some(f) if f.settings.contains_key(key) => f.path.display().to_string(),
                    _ => "default".to_owned(),
                },
                _ => "not set".to_owned(),
            };
            let line = match values.as_slice() {
                [] => format!("# {key} ="),
                [one] if !takes_many(arg) => format!("{key} = {one}"),
                many => format!("{key} = [{}]", many.join(", ")),
            };
            (line, source)
        })
        .collect();
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (line, source) in lines {
        let _ = writeln!(out, "{line:width$}  # {source}");
    }
    out
}

/// A value as TOML, a secret one redacted (a URL keeps all but its password).
fn shown_value(arg: &Arg, raw: &str) -> String {
    if is_secret(arg) {
        let shown = if raw.contains("://") {
            keyward_server::serve::redact_url(raw)
        } else {
            "<redacted>".to_owned()
        };
        return toml::Value::String(shown).to_string();
    }
    match ValueKind::of(arg) {
        ValueKind::Text => toml::Value::String(raw.to_owned()).to_string(),
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    //! Kinds of argument `keyward serve` may gain: switches and repeated options.

    use clap::{Arg, ArgAction, Command, value_parser};

    use super::parse_args;

    fn cli() -> Command {
        Command::new("keyward").subcommand(
            Command::new("serve")
                .arg(Arg::new("config").long("config").value_parser(value_parser!(std::path::PathBuf)))
                .arg(Arg::new("metrics").long("metrics").action(ArgAction::SetTrue))
                .arg(Arg::new("tag").long("tag").action(ArgAction::Append))
                .arg(Arg::new("port").long("port").value_parser(value_parser!(u16)).default_value("80")),
        )
    }

    fn parse(file: &str, args: &[&str]) -> anyhow::Result<clap::ArgMatches> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["keyward".into(), "serve".into(), "--config".into(), path.into_os_string()];
        argv.extend(args.iter().map(Into::into));
        let parsed = parse_args(cli, "serve", argv)?;
        Ok(parsed.matches.subcommand_matches("serve").unwrap().clone())
    }

    #[test]
    fn switches_and_repeated_options_come_from_the_file_too() {
        let m = parse("metrics = true\ntag = [\"a\", \"b\"]\nport = 81\n", &[]).unwrap();
        assert!(m.get_flag("metrics"));
        assert_eq!(m.get_many::<String>("tag").unwrap().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.get_one::<u16>("port"), Some(&81));

        let m = parse("tag = [\"a\"]\nport = 81\n", &["--tag", "c", "--port", "82"]).unwrap();
        assert!(!m.get_flag("metrics"));
        assert_eq!(
            m.get_many::<String>("tag").unwrap().collect::<Vec<_>>(),
            ["c"],
            "flags replace the file's list"
        );
        assert_eq!(m.get_one::<u16>("port"), Some(&82));
    }

    #[test]
    fn wrong_kinds_are_refused() {
        let err = parse("metrics = \"yes\"", &[]).unwrap_err().to_string();
        assert!(err.contains("`metrics` must be true or false, not a string"), "{err}");
        let err = parse("tag = [1]", &[]).unwrap_err().to_string();
        assert!(err.contains("`tag` must be an array of strings"), "{err}");
        let err = parse("port = 70000", &[]).unwrap_err().to_string();
        assert!(err.contains("`port` has an invalid value 70000: 70000 is not in 0..=65535"), "{err}");
    }
}
