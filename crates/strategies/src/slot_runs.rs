//! Consecutive slot runs: a write or read touches each run with one slice instead of one op per
//! token. Its own file because both the slot stores and their chunked buffers read it.

/// `len` consecutive slots from `first_slot`, for the tokens `first_token..first_token + len` of
/// the list they were cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsecutiveRun {
    pub first_slot: usize,
    pub first_token: usize,
    pub len: usize,
}

impl ConsecutiveRun {
    /// The run's slots.
    pub fn slots(&self) -> std::ops::Range<usize> {
        self.first_slot..self.first_slot + self.len
    }
}

/// `slots` cut into runs of consecutive slots, in list order.
pub fn runs(slots: &[usize]) -> Vec<ConsecutiveRun> {
    let mut out: Vec<ConsecutiveRun> = Vec::new();
    for (i, &s) in slots.iter().enumerate() {
        match out.last_mut() {
            Some(run) if run.first_slot + run.len == s => run.len += 1,
            _ => out.push(ConsecutiveRun { first_slot: s, first_token: i, len: 1 }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_where_slots_jump() {
        let got: Vec<(usize, usize, usize)> = runs(&[3, 4, 5, 0, 1, 9])
            .iter()
            .map(|r| (r.first_slot, r.first_token, r.len))
            .collect();
        assert_eq!(got, vec![(3, 0, 3), (0, 3, 2), (9, 5, 1)]);
        assert!(runs(&[]).is_empty());
    }
}
