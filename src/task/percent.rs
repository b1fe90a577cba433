//! Jinja2's `%` string formatting (`{{ "%d-%s" % (3, name) }}`), which Rally's task files
//! use and minijinja does not have.
//!
//! minijinja has no operator hooks, so the template is rewritten before it is compiled:
//! inside `{{ }}` and `{% %}` tags, a string literal followed by `%` and an operand becomes
//! a call of the `pyformat` filter (`"%d-%s" | pyformat((3, name))`). Only a literal on the
//! left is rewritten (what task files write); the filter then formats as Python's `%` does.

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// The template with each `LITERAL % OPERAND` inside a tag turned into a `pyformat` call.
pub fn rewrite(source: &str) -> String {
    let b = source.as_bytes();
    let mut out = String::with_capacity(source.len() + 16);
    let mut i = 0;
    let mut in_tag = false;
    let mut last = 0;
    while i < b.len() {
        if !in_tag {
            if b[i] == b'{' && matches!(b.get(i + 1), Some(b'{' | b'%')) {
                in_tag = true;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match b[i] {
            b'}' if b.get(i + 1) == Some(&b'}') => {
                in_tag = false;
                i += 2;
            }
            b'%' if b.get(i + 1) == Some(&b'}') => {
                in_tag = false;
                i += 2;
            }
            b'\'' | b'"' => {
                let end = string_end(b, i);
                let mut j = skip_space(b, end);
                if b.get(j) == Some(&b'%') && b.get(j + 1) != Some(&b'}') {
                    j = skip_space(b, j + 1);
                    if let Some(operand_end) = operand_end(b, j) {
                        out.push_str(&source[last..end]);
                        out.push_str(" | pyformat(");
                        out.push_str(&source[j..operand_end]);
                        out.push(')');
                        last = operand_end;
                        i = operand_end;
                        continue;
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&source[last..]);
    out
}

/// The index after the string literal that starts at `start`.
fn string_end(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The end of `%`'s right operand at `start`: a parenthesized tuple, a string, a number, or
/// a name with attributes, subscripts and calls.
fn operand_end(b: &[u8], start: usize) -> Option<usize> {
    let first = *b.get(start)?;
    if first == b'\'' || first == b'"' {
        return Some(string_end(b, start));
    }
    let mut i = start;
    if first == b'(' {
        i = bracket_end(b, i)?;
    } else if first.is_ascii_alphanumeric() || first == b'_' || first == b'-' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
            i += 1;
        }
    } else {
        return None;
    }
    // What binds tighter than `%` in Jinja2: attributes, calls, subscripts and filters.
    loop {
        match b.get(i) {
            Some(b'(' | b'[') => i = bracket_end(b, i)?,
            Some(b'.') => i = ident_end(b, i + 1),
            Some(b'|') if b.get(i + 1) != Some(&b'|') => {
                let j = skip_space(b, i + 1);
                let end = ident_end(b, j);
                if end == j {
                    break;
                }
                i = end;
            }
            Some(c) if c.is_ascii_whitespace() => {
                // A filter may follow after spaces (`x | upper`); anything else ends it.
                let j = skip_space(b, i);
                if b.get(j) == Some(&b'|') && b.get(j + 1) != Some(&b'|') {
                    i = j;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    Some(i)
}

fn ident_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    i
}

/// The index after the bracket that closes the one at `start`, skipping strings.
fn bracket_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'\'' | b'"' => {
                i = string_end(b, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The `pyformat` filter: `format % args` as Python computes it (`%s %r %d %i %f %F %e %E
/// %g %x %X %o %c %%`, with flags, width and precision).
pub fn pyformat(format: &str, args: Value) -> Result<String, Error> {
    let args: Vec<Value> = match args.kind() {
        ValueKind::Seq => args.try_iter()?.collect(),
        _ => vec![args],
    };
    let bad = |m: String| Error::new(ErrorKind::InvalidOperation, m);
    let mut next = args.into_iter();
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&f) = chars.peek() {
            if "-+ 0#".contains(f) {
                flags.push(f);
                chars.next();
            } else {
                break;
            }
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0));
        }
        let conversion = chars
            .next()
            .ok_or_else(|| bad("incomplete format".into()))?;
        if conversion == '%' {
            out.push('%');
            continue;
        }
        let value = next
            .next()
            .ok_or_else(|| bad("not enough arguments for format string".into()))?;
        let number = || -> Result<f64, Error> {
            f64::try_from(value.clone()).map_err(|_| {
                bad(format!(
                    "%{conversion} format: a number is required, not {}",
                    value.kind()
                ))
            })
        };
        let body = match conversion {
            's' => {
                let s = value.to_string();
                match precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            'r' => match value.as_str() {
                Some(s) => format!("'{s}'"),
                None => value.to_string(),
            },
            'd' | 'i' => signed(number()?.trunc(), &flags, |a| format!("{a:.0}")),
            'f' | 'F' => signed(number()?, &flags, |a| {
                format!("{a:.*}", precision.unwrap_or(6))
            }),
            'e' | 'E' => {
                let text = signed(number()?, &flags, |a| exponent(a, precision.unwrap_or(6)));
                if conversion == 'E' {
                    text.to_uppercase()
                } else {
                    text
                }
            }
            'g' | 'G' => signed(number()?, &flags, |a| {
                let p = precision.unwrap_or(6).max(1);
                let exp = if a == 0.0 {
                    0
                } else {
                    a.log10().floor() as i32
                };
                if exp < -4 || exp >= p as i32 {
                    // %g drops the mantissa's trailing zeros (`1e+10`, not `1.00000e+10`).
                    let text = exponent(a, p - 1);
                    match text.split_once('e') {
                        Some((m, e)) if m.contains('.') => {
                            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
                        }
                        _ => text,
                    }
                } else {
                    let text = format!("{a:.*}", (p as i32 - 1 - exp).max(0) as usize);
                    if text.contains('.') {
                        text.trim_end_matches('0').trim_end_matches('.').to_string()
                    } else {
                        text
                    }
                }
            }),
            'x' => signed(number()?.trunc(), &flags, |a| format!("{:x}", a as u64)),
            'X' => signed(number()?.trunc(), &flags, |a| format!("{:X}", a as u64)),
            'o' => signed(number()?.trunc(), &flags, |a| format!("{:o}", a as u64)),
            'c' => match value.as_str() {
                Some(s) => s.to_string(),
                None => char::from_u32(number()? as u32).map_or_else(String::new, String::from),
            },
            other => return Err(bad(format!("unsupported format character '{other}'"))),
        };
        let width: usize = width.parse().unwrap_or(0);
        let numeric = !matches!(conversion, 's' | 'r' | 'c');
        out.push_str(&pad(&body, width, &flags, numeric));
    }
    if next.next().is_some() {
        return Err(bad(
            "not all arguments converted during string formatting".into()
        ));
    }
    Ok(out)
}

/// A number's text with its sign as Python puts it (`+` and ` ` flags).
fn signed(v: f64, flags: &str, digits: impl Fn(f64) -> String) -> String {
    let body = digits(v.abs());
    if v < 0.0
        && body
            .trim_start_matches(['0', '.'])
            .chars()
            .any(|c| c != '0')
    {
        format!("-{body}")
    } else if flags.contains('+') {
        format!("+{body}")
    } else if flags.contains(' ') {
        format!(" {body}")
    } else {
        body
    }
}

/// `2.500000e+00`, as C and Python write it.
fn exponent(a: f64, precision: usize) -> String {
    let text = format!("{a:.precision$e}");
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!(
        "{mantissa}e{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

fn pad(body: &str, width: usize, flags: &str, numeric: bool) -> String {
    let len = body.chars().count();
    if len >= width {
        return body.to_string();
    }
    let fill = width - len;
    if flags.contains('-') {
        format!("{body}{}", " ".repeat(fill))
    } else if flags.contains('0') && numeric {
        let (sign, digits) = match body.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), &body[1..]),
            _ => (String::new(), body),
        };
        format!("{sign}{}{digits}", "0".repeat(fill))
    } else {
        format!("{}{body}", " ".repeat(fill))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_followed_by_percent_become_pyformat_calls() {
        assert_eq!(
            rewrite("a {{ '%d-%s' % (3, name) }} b"),
            "a {{ '%d-%s' | pyformat((3, name)) }} b"
        );
        assert_eq!(
            rewrite("{{ \"%05.1f\" % x.y[0] }}"),
            "{{ \"%05.1f\" | pyformat(x.y[0]) }}"
        );
        assert_eq!(
            rewrite("{% set s = '%s' % n %}{{ s }}"),
            "{% set s = '%s' | pyformat(n) %}{{ s }}"
        );
        // Outside tags, and a `%` that ends a tag, are left alone.
        assert_eq!(rewrite("'%d' % 3 {{ x }}"), "'%d' % 3 {{ x }}");
        // Attributes after subscripts, and filters, bind tighter than `%`.
        assert_eq!(
            rewrite("{{ '%s' % x[0].y }}"),
            "{{ '%s' | pyformat(x[0].y) }}"
        );
        assert_eq!(
            rewrite("{{ '%s' % x | upper }}"),
            "{{ '%s' | pyformat(x | upper) }}"
        );
        // Non-ASCII text and unterminated strings do not trouble it.
        assert_eq!(rewrite("{{ 'é%s' % n }} ü"), "{{ 'é%s' | pyformat(n) }} ü");
        assert_eq!(rewrite("{{ 'abc"), "{{ 'abc");
        assert_eq!(
            rewrite("{% if x == 'a' %}y{% endif %}"),
            "{% if x == 'a' %}y{% endif %}"
        );
    }

    #[test]
    fn formats_as_python() {
        let f = |fmt: &str, args: Value| pyformat(fmt, args).unwrap();
        assert_eq!(f("%d", Value::from(3)), "3");
        assert_eq!(
            f("%d-%s", Value::from(vec![Value::from(3), Value::from("x")])),
            "3-x"
        );
        assert_eq!(f("%05.1f", Value::from(2.5)), "002.5");
        assert_eq!(f("%-4d|", Value::from(7)), "7   |");
        assert_eq!(f("%+d", Value::from(7)), "+7");
        assert_eq!(f("%.2f%%", Value::from(12.345)), "12.35%");
        assert_eq!(f("%x", Value::from(255)), "ff");
        assert_eq!(f("%r", Value::from("a")), "'a'");
        assert_eq!(f("%e", Value::from(2.5)), "2.500000e+00");
        assert_eq!(f("%g", Value::from(0.0001)), "0.0001");
        assert_eq!(f("%g", Value::from(1234567.0)), "1.23457e+06");
        assert_eq!(f("%g", Value::from(1e10)), "1e+10");
        assert_eq!(f("%d", Value::from(-3.7)), "-3");
        assert!(pyformat("%d %d", Value::from(1)).is_err());
        assert!(pyformat("%d", Value::from(vec![Value::from(1), Value::from(2)])).is_err());
    }
}
