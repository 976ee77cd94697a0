//! Human output of `diagnose drift`: one line per row, then (in a dry run) the transactions
//! `--repair` would send, then the live-state findings.

use kube_ovn_controller::drift::Report;

use crate::state::StateReport;

/// The live-state findings, one line each (nothing when there are none).
pub fn state(report: &StateReport) -> String {
    if report.findings.is_empty() {
        return "no live-state problem: every address has one owner, every running pod's port is bound and installed on its node, every gateway answers\n".to_string();
    }
    let mut out = String::from("\nlive state:\n");
    for f in &report.findings {
        out.push_str(&format!("{:<8}  {}  {}\n", f.check, f.object, f.detail));
    }
    out
}

/// The report as aligned columns; `with_transactions` appends the repair transactions.
pub fn table(report: &Report, with_transactions: bool) -> String {
    if report.rows.is_empty() {
        return "no drift: the NB holds what kube-ovn-controller wants\n".to_string();
    }
    let mut rows = vec![[
        "STATE".to_string(),
        "TABLE".to_string(),
        "ROW".to_string(),
        "WANTED BY".to_string(),
        "COLUMNS".to_string(),
    ]];
    for r in &report.rows {
        let columns = r
            .columns
            .iter()
            .map(|(k, c)| {
                if c.actual.is_empty() {
                    format!("{k}={}", c.desired)
                } else {
                    format!("{k}: {} -> {}", c.actual, c.desired)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        rows.push([
            r.state.to_string(),
            r.table.clone(),
            r.row.clone(),
            r.objects.join(", "),
            columns,
        ]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (w, cell) in widths.iter().zip(row.iter()) {
            out.push_str(&format!("{cell:<w$}  ", w = *w));
        }
        out.push_str(&row[4]);
        out.push('\n');
    }
    if with_transactions {
        out.push_str("\n--repair would send:\n");
        for (what, txn) in &report.transactions {
            let ops: Vec<_> = txn.ops.iter().map(|o| o.to_json()).collect();
            out.push_str(&format!("# {what}\n{}\n", serde_json::Value::Array(ops)));
        }
    }
    out
}
