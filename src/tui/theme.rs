//! TUI colour themes: TOML files (`--theme NAME|PATH`, SPEC §7).
//!
//! The three built-in themes are compiled in (`include_str!`), so the binary works from any
//! directory; a user file uses the same format. A bad file is reported with the file and the
//! key at fault, because a theme is edited by hand and "invalid theme" alone is no help.

use std::collections::BTreeMap;
use std::path::Path;

use ratatui::style::Color;
use serde::Deserialize;

/// Built-in theme names, in the order `t` cycles through them.
pub const BUILTIN: [&str; 3] = ["dark", "light", "high-contrast"];

const DARK: &str = include_str!("../../themes/dark.toml");
const LIGHT: &str = include_str!("../../themes/light.toml");
const HIGH_CONTRAST: &str = include_str!("../../themes/high-contrast.toml");

fn builtin_source(name: &str) -> Option<&'static str> {
    match name {
        "dark" => Some(DARK),
        "light" => Some(LIGHT),
        "high-contrast" => Some(HIGH_CONTRAST),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error(
        "unknown theme '{0}' (built in: dark, light, high-contrast; or give the path of a .toml file)"
    )]
    Unknown(String),
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {key}: '{value}' is not a colour (use a name like \"green\" or \"#rrggbb\")")]
    BadColour {
        path: String,
        key: String,
        value: String,
    },
    #[error("{path}: {key}: missing")]
    Missing { path: String, key: String },
    #[error("{path}: {key}: unknown key (known: {known})")]
    UnknownKey {
        path: String,
        key: String,
        known: String,
    },
}

/// Declares the palette once: the struct, its key list and its parser cannot drift apart.
macro_rules! palette {
    ($($field:ident: $doc:literal),* $(,)?) => {
        /// The colours the renderer uses, one per role.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Palette {
            $(#[doc = $doc] pub $field: Color,)*
        }

        /// Keys of the `[colors]` table.
        pub const COLOR_KEYS: &[&str] = &[$(stringify!($field)),*];

        impl Palette {
            fn from_map(path: &str, map: &BTreeMap<String, String>) -> Result<Self, ThemeError> {
                Ok(Self { $($field: colour(path, map, stringify!($field))?,)* })
            }
        }
    };
}

palette! {
    text: "Ordinary text.",
    dim: "Secondary text: labels, axes, hints.",
    accent: "Titles and the selected source.",
    pass: "SLA pass and healthy states.",
    fail: "SLA failure, errors, aborted states.",
    warn: "Stopping, warnings.",
    border: "Block borders.",
    gauge: "The progress gauge.",
    highlight: "Background of the selected table row.",
    throughput: "Throughput graph line and sparklines.",
    p50: "p50 latency line.",
    p95: "p95 latency line.",
    p99: "p99 latency line.",
    max: "max latency line.",
    failures: "Failure-rate graph line.",
    limit: "SLA limit line drawn across a graph.",
    background: "The screen's background; `reset` (the terminal's own) unless a theme needs its own, as the light one does on a dark terminal. Optional.",
}

/// A named palette.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Theme {
    pub name: String,
    pub colors: Palette,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    name: Option<String>,
    colors: BTreeMap<String, String>,
}

fn colour(path: &str, map: &BTreeMap<String, String>, key: &str) -> Result<Color, ThemeError> {
    if key == "background" && !map.contains_key(key) {
        // Added after themes were first written: older files stay valid.
        return Ok(Color::Reset);
    }
    let value = map.get(key).ok_or_else(|| ThemeError::Missing {
        path: path.to_owned(),
        key: format!("colors.{key}"),
    })?;
    value.parse().map_err(|_| ThemeError::BadColour {
        path: path.to_owned(),
        key: format!("colors.{key}"),
        value: value.clone(),
    })
}

impl Theme {
    /// A built-in theme by name (`dark`, `light`, `high-contrast`), else a TOML file by path.
    ///
    /// A bare name that is neither built in nor an existing file is `Unknown`, so a typo in
    /// `--theme drak` says what the choices are instead of "file not found".
    pub fn load(name_or_path: &str) -> Result<Self, ThemeError> {
        if let Some(src) = builtin_source(name_or_path) {
            return Self::parse(&format!("themes/{name_or_path}.toml"), src);
        }
        let path = Path::new(name_or_path);
        let looks_like_path = name_or_path.contains(['/', '\\'])
            || path.extension().is_some_and(|e| e == "toml")
            || path.exists();
        if !looks_like_path {
            return Err(ThemeError::Unknown(name_or_path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ThemeError::Read {
            path: name_or_path.to_owned(),
            source,
        })?;
        Self::parse(name_or_path, &text)
    }

    /// Parses theme TOML; `path` only names the source in errors. A theme without `name`
    /// takes the file's stem.
    pub fn parse(path: &str, text: &str) -> Result<Self, ThemeError> {
        let raw: RawTheme = toml::from_str(text).map_err(|e| {
            // Only the line: toml's own Display quotes the source, too long for one line.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            ThemeError::Syntax {
                path: path.to_owned(),
                message: match line {
                    Some(line) => format!("line {line}: {}", e.message()),
                    None => e.message().to_owned(),
                },
            }
        })?;
        if let Some(key) = raw
            .colors
            .keys()
            .find(|k| !COLOR_KEYS.contains(&k.as_str()))
        {
            return Err(ThemeError::UnknownKey {
                path: path.to_owned(),
                key: format!("colors.{key}"),
                known: COLOR_KEYS.join(", "),
            });
        }
        let colors = Palette::from_map(path, &raw.colors)?;
        let name = raw.name.unwrap_or_else(|| {
            Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.to_owned())
        });
        Ok(Self { name, colors })
    }

    /// The built-in theme after this one (what `t` switches to); a user theme goes back to
    /// the first built-in one.
    pub fn next_builtin(&self) -> Self {
        let i = BUILTIN.iter().position(|n| *n == self.name);
        let next = BUILTIN[i.map_or(0, |i| (i + 1) % BUILTIN.len())];
        Self::load(next).unwrap_or_default()
    }

    /// What `t` cycles through: the built-in themes, and the one given with `--theme PATH`
    /// when it is not one of them, so it can be come back to.
    pub fn cycle(first: &Theme) -> Vec<Theme> {
        let mut themes: Vec<Theme> = BUILTIN
            .iter()
            .filter_map(|name| Self::load(name).ok())
            .collect();
        if !themes.iter().any(|t| t == first) {
            themes.push(first.clone());
        }
        themes
    }
}

impl Default for Theme {
    /// The dark theme.
    fn default() -> Self {
        // The embedded files are checked by `builtin_themes_parse`; this cannot fail at run
        // time unless that test does.
        Self::parse("themes/dark.toml", DARK).expect("embedded dark theme is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_themes_parse() {
        for name in BUILTIN {
            let t = Theme::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.name, name);
        }
        assert_eq!(Theme::default().colors.pass, Color::Green);
        assert_eq!(
            Theme::load("light").map(|t| t.colors.pass).ok(),
            Some(Color::Rgb(0, 0x7a, 0))
        );
    }

    #[test]
    fn cycles_through_builtins() {
        let t = Theme::default();
        let names: Vec<String> = std::iter::successors(Some(t), |t| Some(t.next_builtin()))
            .take(4)
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["dark", "light", "high-contrast", "dark"]);
    }

    fn with_colour(key: &str, value: &str) -> String {
        DARK.replace(
            &format!("\n{key} = "),
            &format!("\n{key} = \"{value}\"\n# "),
        )
    }

    #[test]
    fn loads_a_file_by_path() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mine.toml");
        std::fs::write(
            &path,
            with_colour("pass", "#010203").replace("\"dark\"", "\"mine\""),
        )?;
        let t = Theme::load(&path.to_string_lossy())?;
        assert_eq!(
            (t.name.as_str(), t.colors.pass),
            ("mine", Color::Rgb(1, 2, 3))
        );
        // Without a name, the file's stem names it.
        std::fs::write(&path, DARK.replace("name = \"dark\"", ""))?;
        assert_eq!(Theme::load(&path.to_string_lossy())?.name, "mine");
        Ok(())
    }

    #[test]
    fn bad_colour_names_file_and_key() {
        let e = Theme::parse("themes/x.toml", &with_colour("pass", "blurple")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "themes/x.toml: colors.pass: 'blurple' is not a colour \
             (use a name like \"green\" or \"#rrggbb\")"
        );
    }

    #[test]
    fn missing_and_unknown_keys_are_named() {
        let text = DARK.replace("\ngauge = ", "\n# gauge = ");
        let e = Theme::parse("t.toml", &text).unwrap_err();
        assert_eq!(e.to_string(), "t.toml: colors.gauge: missing");
        let text = format!("{DARK}grpah = \"red\"\n");
        let e = Theme::parse("t.toml", &text).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("t.toml: colors.grpah: unknown key (known: text, "),
            "{e}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let e = Theme::parse("t.toml", "name = \n").unwrap_err();
        assert!(matches!(e, ThemeError::Syntax { .. }), "{e:?}");
        assert!(e.to_string().starts_with("t.toml: "), "{e}");
        let e = Theme::parse("t.toml", "[colours]\n").unwrap_err();
        assert!(e.to_string().contains("colours"), "{e}");
    }

    #[test]
    fn unknown_names_and_missing_files() {
        let e = Theme::load("drak").unwrap_err();
        assert!(matches!(e, ThemeError::Unknown(_)), "{e:?}");
        assert!(e.to_string().contains("high-contrast"), "{e}");
        let e = Theme::load("/nonexistent/dir/x.toml").unwrap_err();
        assert!(matches!(e, ThemeError::Read { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("/nonexistent/dir/x.toml: "),
            "{e}"
        );
    }
}
