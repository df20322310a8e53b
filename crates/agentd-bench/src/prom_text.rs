//! A minimal reader of the Prometheus text exposition format, as agentd's `/metrics` serves
//! it: each sample's name, labels and value (comments, `# EOF` and timestamps are skipped).

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of an exposition; lines that do not parse are left out.
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

/// The sum of the samples named `name` that carry every label in `wanted`; `None` when no
/// sample matches (the series is not exposed).
pub(crate) fn sum(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> Option<f64> {
    let mut matched = samples.iter().filter(|sample| {
        sample.name == name
            && wanted
                .iter()
                .all(|(key, value)| sample.labels.iter().any(|(k, v)| k == key && v == value))
    });
    let first = matched.next()?;
    Some(first.value + matched.map(|sample| sample.value).sum::<f64>())
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inside)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Labels up to the closing `}`; returns them and the text after it.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = text.split_once('=')?;
        let quoted = after_key.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (at, '"') => break at,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, other) => value.push(other),
            }
        };
        labels.push((key.trim().to_owned(), value));
        text = &quoted[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, sum};

    const TEXT: &str = "# HELP agentd_store_reads Reads that went to SQLite.\n\
        # TYPE agentd_store_reads counter\n\
        agentd_store_reads_total 42\n\
        agentd_store_mirror_lookups_total{part=\"history\",result=\"hit\"} 90\n\
        agentd_store_mirror_lookups_total{part=\"history\",result=\"miss\"} 10\n\
        agentd_store_mirror_lookups_total{part=\"records\",result=\"hit\"} 5\n\
        agentd_store_mirror_bytes{part=\"history\"} 1.5e6 1700000000000\n\
        odd{note=\"a \\\"quoted\\\" }, value\"} 7\n\
        agentd_turn_steps_bucket{le=\"+Inf\"} 3\n\
        broken{part=\"x\" 1\n\
        # EOF\n";

    #[test]
    fn reads_names_labels_and_values() {
        let samples = parse(TEXT);
        assert_eq!(samples.len(), 7, "{samples:?}");
        assert_eq!(samples[0].name, "agentd_store_reads_total");
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(
            samples[1].labels,
            [
                ("part".to_owned(), "history".to_owned()),
                ("result".to_owned(), "hit".to_owned())
            ]
        );
        assert_eq!(samples[4].value, 1.5e6, "the timestamp is not the value");
        assert_eq!(samples[5].labels[0].1, "a \"quoted\" }, value");
        assert_eq!(samples[5].value, 7.0);
    }

    #[test]
    fn sums_the_samples_with_the_wanted_labels() {
        let samples = parse(TEXT);
        let lookups = "agentd_store_mirror_lookups_total";
        assert_eq!(
            sum(&samples, lookups, &[("part", "history"), ("result", "hit")]),
            Some(90.0)
        );
        assert_eq!(sum(&samples, lookups, &[("result", "hit")]), Some(95.0));
        assert_eq!(sum(&samples, lookups, &[]), Some(105.0));
        assert_eq!(sum(&samples, lookups, &[("part", "children")]), None);
        assert_eq!(
            sum(&samples, "agentd_store_mirror_evictions_total", &[]),
            None
        );
    }
}
