//! `stock`, `report reconciliation` and `audit export`: the counter's figures from the
//! journal, for the branch's end of day and for auditors. Output is masked card data only.

#[allow(unused_imports)]
use super::*;

use crate::journal::Journal;
use crate::reconciliation::{day_bounds, parse_day};

/// `stock …` actions; without one, the stock per card product is shown.
#[derive(Debug, Subcommand)]
pub enum StockAction {
    /// Record blank cards loaded (count and the batch or lot on the box).
    Load {
        /// Card product (as in the orders' cardProductId).
        #[arg(long)]
        product: String,
        /// Blanks loaded.
        #[arg(long)]
        count: u32,
        /// Batch or lot number.
        #[arg(long)]
        batch: String,
        /// Staff id of the supervisor loading them (recorded in the journal).
        #[arg(long)]
        by: String,
    },
}

/// `report …` kinds.
#[derive(Debug, Subcommand)]
pub enum ReportKind {
    /// End-of-day reconciliation as CSV: product, loaded, issued, spoiled, remaining,
    /// difference; then the spoiled cards with reason and who moved them.
    Reconciliation {
        /// Day (UTC), YYYY-MM-DD.
        #[arg(long)]
        day: String,
    },
}

/// `audit …` actions.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Every audited action as JSON lines (no full PAN, ever).
    Export {
        /// One day (UTC), YYYY-MM-DD.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        day: Option<String>,
        /// First day, YYYY-MM-DD (with --to).
        #[arg(long, requires = "to")]
        from: Option<String>,
        /// Last day included, YYYY-MM-DD (with --from).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn journal(explicit: Option<&Path>) -> Result<(StationConfig, Journal), Failure> {
    let cfg = load_config(explicit)?;
    let j = Journal::open(&cfg.resolve(&cfg.journal.path)).map_err(runtime)?;
    Ok((cfg, j))
}

pub(super) fn stock(explicit: Option<&Path>, action: Option<StockAction>) -> Outcome {
    let (cfg, j) = journal(explicit)?;
    match action {
        None => {
            println!(
                "{:<24} {:>8} {:>8} {:>8} {:>8} {:>10}",
                "product", "loaded", "used", "issued", "spoiled", "remaining"
            );
            for l in crate::stock::levels(&j, &cfg.stock).map_err(runtime)? {
                println!(
                    "{:<24} {:>8} {:>8} {:>8} {:>8} {:>10}{}",
                    l.product,
                    l.loaded,
                    l.used,
                    l.issued,
                    l.spoiled,
                    l.remaining,
                    if l.low {
                        format!("  LOW (below {})", cfg.stock.warn_below)
                    } else {
                        String::new()
                    }
                );
            }
            Ok(())
        }
        Some(StockAction::Load {
            product,
            count,
            batch,
            by,
        }) => {
            if let Some(path) = cfg.console.staff.as_ref().map(|p| cfg.resolve(p)) {
                let file = crate::staff::StaffFile::load(&path).map_err(usage)?;
                let member =
                    file.staff.iter().find(|a| a.id == by).ok_or_else(|| {
                        usage(format!("--by: no staff '{by}' in {}", path.display()))
                    })?;
                crate::roles::check(
                    member.role,
                    crate::roles::Duty::LoadStock,
                    "record blanks loaded",
                )
                .map_err(|e| usage(format!("--by: {e}")))?;
            }
            let l = crate::stock::load(&j, &product, count, &batch, &by)
                .map_err(|e| usage(format!("[{}] {e}", e.code())))?;
            println!(
                "{} blank(s) of {} from batch {} recorded by {}",
                l.count, l.product, l.batch, l.actor
            );
            Ok(())
        }
    }
}

pub(super) fn report(explicit: Option<&Path>, kind: ReportKind) -> Outcome {
    match kind {
        ReportKind::Reconciliation { day } => {
            let day = parse_day(&day).map_err(usage)?;
            let (_, j) = journal(explicit)?;
            let r = crate::reconciliation::reconcile(&j, day).map_err(runtime)?;
            print!("{}", r.to_csv());
            Ok(())
        }
    }
}

pub(super) fn audit(explicit: Option<&Path>, action: AuditAction) -> Outcome {
    let AuditAction::Export { day, from, to, out } = action;
    let (from, until) = match (day, from, to) {
        (Some(d), None, None) => day_bounds(parse_day(&d).map_err(usage)?),
        (None, Some(f), Some(t)) => {
            let (f, t) = (parse_day(&f).map_err(usage)?, parse_day(&t).map_err(usage)?);
            if t < f {
                return Err(usage("--to: a day on or after --from"));
            }
            (day_bounds(f).0, day_bounds(t).1)
        }
        _ => return Err(usage("give --day YYYY-MM-DD, or --from and --to")),
    };
    let (_, j) = journal(explicit)?;
    let lines = crate::audit::lines(&j, &from, &until).map_err(runtime)?;
    let text = crate::audit::to_json_lines(&lines);
    match out {
        Some(path) => {
            std::fs::write(&path, text).map_err(|e| runtime(format!("{}: {e}", path.display())))?;
            eprintln!(
                "{} audit line(s) written to {}",
                lines.len(),
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
