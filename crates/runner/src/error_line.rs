//! The one line the runner prints for an error: its chain of causes joined by ": ".
//!
//! Library errors often name their cause in their own message (`cannot read GGUF file: No such
//! file or directory`) and also return it as their `source`, so anyhow's `{:#}` would print the
//! cause twice. A cause whose text the line already holds is left out.

/// `e` and its causes, outermost first, each once.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("x.gguf: cannot read GGUF file: {source}")]
    struct Wraps {
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(Wraps { source: io }).context("model smollm2-135m");
        assert_eq!(
            error_line(&e),
            "model smollm2-135m: x.gguf: cannot read GGUF file: No such file"
        );
        // A cause the message does not hold is still shown.
        let e = anyhow::anyhow!("disk full").context("cannot write results/x/memory.csv");
        assert_eq!(error_line(&e), "cannot write results/x/memory.csv: disk full");
    }
}
