//! Data parallelism for the large inputs of a Kubeflow cluster: a map over a slice on scoped
//! threads, results in input order. Pure: no shared state, no IO.

use std::num::NonZeroUsize;

/// Below this many items the work stays on the calling thread.
const MIN_PARALLEL: usize = 256;

/// `items.iter().map(f).collect()`, spread over the machine's cores in contiguous chunks, with
/// the results in the order of `items`.
pub fn map<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = std::thread::available_parallelism()
        .map(NonZeroUsize::get)
        .unwrap_or(1)
        .min(8);
    if threads < 2 || items.len() < MIN_PARALLEL {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend(part),
                // A panic in `f` is a bug; re-raise it on the caller's thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_and_length() {
        let items: Vec<u32> = (0..10_000).collect();
        let out = super::map(&items, |x| x * 2);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(super::map(&[1u8, 2], |x| *x), vec![1, 2]);
        assert!(super::map(&Vec::<u8>::new(), |x| *x).is_empty());
    }
}
