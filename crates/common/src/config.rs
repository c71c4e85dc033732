//! oslo-style INI configuration.
//!
//! Every option is declared once as an [`Opt`] (section, name, default, help) by the crate
//! that reads it. [`Config`] holds the values parsed from the file; typed reads fall back to
//! the declared default, so `kumo config sample` and the code can never disagree about a
//! default. `$state_dir` in values and defaults expands to the state directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A declared option.
#[derive(Debug)]
pub struct Opt {
    pub section: &'static str,
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid INI: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("[{section}] {name} = {value:?} is not valid: expected {expected}")]
    Invalid {
        section: String,
        name: String,
        value: String,
        expected: &'static str,
    },
    #[error("option [{section}] {name} is read but was never declared (a bug in kumo)")]
    Undeclared { section: String, name: String },
}

/// Parsed configuration plus the options declared so far.
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: BTreeMap<(String, String), String>,
    declared: Vec<&'static [Opt]>,
    state_dir: PathBuf,
    source: Option<PathBuf>,
}

impl Config {
    /// An empty configuration (all defaults) rooted at `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            ..Self::default()
        }
    }

    /// Read an INI file. Section names are kept as written (`DEFAULT` included); option
    /// names are lower-cased, as oslo.config treats them.
    pub fn load(path: &Path, state_dir: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        cfg.state_dir = state_dir.into();
        cfg.source = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parse INI text (no state dir set).
    pub fn parse(text: &str) -> Result<Self, String> {
        let ini = ini::Ini::load_from_str_opt(
            text,
            ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let mut values = BTreeMap::new();
        for (section, props) in ini.iter() {
            let section = section.unwrap_or("DEFAULT").to_string();
            for (k, v) in props.iter() {
                values.insert(
                    (section.clone(), k.trim().to_ascii_lowercase()),
                    v.trim().to_string(),
                );
            }
        }
        Ok(Self {
            values,
            ..Self::default()
        })
    }

    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn set_state_dir(&mut self, dir: impl Into<PathBuf>) {
        self.state_dir = dir.into();
    }

    /// Declare a crate's options; reads of undeclared options are errors.
    pub fn declare(&mut self, opts: &'static [Opt]) {
        if !self.declared.iter().any(|d| std::ptr::eq(*d, opts)) {
            self.declared.push(opts);
        }
    }

    /// Set a value programmatically (command-line flags win over the file).
    pub fn set(&mut self, section: &str, name: &str, value: impl Into<String>) {
        self.values.insert(
            (section.to_string(), name.to_ascii_lowercase()),
            value.into(),
        );
    }

    fn opt(&self, section: &str, name: &str) -> Option<&'static Opt> {
        self.declared
            .iter()
            .flat_map(|d| d.iter())
            .find(|o| o.section == section && o.name == name)
    }

    fn expand(&self, v: &str) -> String {
        v.replace("$state_dir", &self.state_dir.to_string_lossy())
    }

    /// The raw string value (file value or declared default), `$state_dir` expanded.
    pub fn get_str(&self, section: &str, name: &str) -> Result<String, ConfigError> {
        let opt = self
            .opt(section, name)
            .ok_or_else(|| ConfigError::Undeclared {
                section: section.into(),
                name: name.into(),
            })?;
        let raw = self
            .values
            .get(&(section.to_string(), name.to_string()))
            .map(String::as_str)
            .unwrap_or(opt.default);
        Ok(self.expand(raw))
    }

    /// A typed value.
    pub fn get<T: ConfigValue>(&self, section: &str, name: &str) -> Result<T, ConfigError> {
        let raw = self.get_str(section, name)?;
        T::parse_value(&raw).ok_or_else(|| ConfigError::Invalid {
            section: section.into(),
            name: name.into(),
            value: raw,
            expected: T::EXPECTED,
        })
    }

    /// Options present in the file that no crate declared (typos, most likely).
    pub fn unknown_options(&self) -> Vec<String> {
        self.values
            .keys()
            .filter(|(s, n)| self.opt(s, n).is_none())
            .map(|(s, n)| format!("[{s}] {n}"))
            .collect()
    }

    /// Every declared option with its default and help, as a commented INI file.
    pub fn sample(&self) -> String {
        let mut by_section: BTreeMap<&str, Vec<&Opt>> = BTreeMap::new();
        for o in self.declared.iter().flat_map(|d| d.iter()) {
            by_section.entry(o.section).or_default().push(o);
        }
        let mut out = String::new();
        // DEFAULT first, as oslo-config-generator writes it.
        let mut sections: Vec<&str> = by_section.keys().copied().collect();
        sections.sort_by_key(|s| (*s != "DEFAULT", *s));
        for section in sections {
            let _ = writeln!(out, "[{section}]\n");
            for o in &by_section[section] {
                for line in o.help.lines() {
                    let _ = writeln!(out, "# {}", line.trim());
                }
                let _ = writeln!(out, "#{} = {}\n", o.name, o.default);
            }
        }
        out
    }
}

/// Types an option can be read as.
pub trait ConfigValue: Sized {
    const EXPECTED: &'static str;
    fn parse_value(s: &str) -> Option<Self>;
}

impl ConfigValue for String {
    const EXPECTED: &'static str = "a string";
    fn parse_value(s: &str) -> Option<Self> {
        Some(s.to_string())
    }
}

impl ConfigValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse_value(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

macro_rules! number_value {
    ($($t:ty),*) => {$(
        impl ConfigValue for $t {
            const EXPECTED: &'static str = concat!("a number (", stringify!($t), ")");
            fn parse_value(s: &str) -> Option<Self> { <$t>::from_str(s).ok() }
        }
    )*};
}
number_value!(u16, u32, u64, usize, i32, i64, f64);

impl<T: ConfigValue> ConfigValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn parse_value(s: &str) -> Option<Self> {
        if s.is_empty() {
            Some(None)
        } else {
            T::parse_value(s).map(Some)
        }
    }
}

impl ConfigValue for Vec<String> {
    const EXPECTED: &'static str = "a comma-separated list";
    fn parse_value(s: &str) -> Option<Self> {
        Some(
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static OPTS: &[Opt] = &[
        Opt {
            section: "database",
            name: "connection",
            default: "sqlite://$state_dir/db/x.sqlite",
            help: "Where the data lives.",
        },
        Opt {
            section: "identity",
            name: "password_hash_rounds",
            default: "12",
            help: "bcrypt cost.",
        },
        Opt {
            section: "DEFAULT",
            name: "debug",
            default: "false",
            help: "More logs.",
        },
        Opt {
            section: "auth",
            name: "methods",
            default: "password,token",
            help: "Methods.",
        },
    ];

    #[test]
    fn defaults_values_and_expansion() {
        let mut c = Config::parse(
            "[DEFAULT]\ndebug = True\n[identity]\npassword_hash_rounds = 4\n[bogus]\nx=1\n",
        )
        .unwrap();
        c.set_state_dir("/var/lib/kumo");
        c.declare(OPTS);
        assert!(c.get::<bool>("DEFAULT", "debug").unwrap());
        assert_eq!(c.get::<u32>("identity", "password_hash_rounds").unwrap(), 4);
        assert_eq!(
            c.get_str("database", "connection").unwrap(),
            "sqlite:///var/lib/kumo/db/x.sqlite"
        );
        assert_eq!(
            c.get::<Vec<String>>("auth", "methods").unwrap(),
            vec!["password", "token"]
        );
        assert_eq!(c.unknown_options(), vec!["[bogus] x".to_string()]);
        assert!(matches!(
            c.get::<u32>("nope", "nope"),
            Err(ConfigError::Undeclared { .. })
        ));
    }

    #[test]
    fn invalid_values_name_the_option() {
        let mut c = Config::parse("[identity]\npassword_hash_rounds = lots\n").unwrap();
        c.declare(OPTS);
        let err = c
            .get::<u32>("identity", "password_hash_rounds")
            .unwrap_err()
            .to_string();
        assert!(err.contains("[identity] password_hash_rounds"), "{err}");
    }

    #[test]
    fn sample_lists_every_option_default_section_first() {
        let mut c = Config::new("/tmp");
        c.declare(OPTS);
        let s = c.sample();
        assert!(s.starts_with("[DEFAULT]"));
        assert!(s.contains("#password_hash_rounds = 12"));
        assert!(s.contains("# Where the data lives."));
    }
}
