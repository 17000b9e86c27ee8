//! Sage's cost transaction types and the direct cost each becomes: the one place for the text
//! "AP cost" and the rest (DOMAIN.md sections 1 and 4).

use std::collections::BTreeMap;

/// The Transaction_Type of a cost row. Every other type (commitments, billing, estimates…) is
/// filtered out at ingest and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CostType {
    Ap,
    Pr,
    Eq,
    Jc,
    Iv,
    Sm,
}

impl CostType {
    /// Every cost type, in Sage's order.
    pub const ALL: [CostType; 6] = [
        CostType::Ap,
        CostType::Pr,
        CostType::Eq,
        CostType::Jc,
        CostType::Iv,
        CostType::Sm,
    ];

    /// Sage's text of the type.
    #[inline]
    pub const fn as_str(self) -> &'static str {
        match self {
            CostType::Ap => "AP cost",
            CostType::Pr => "PR cost",
            CostType::Eq => "EQ cost",
            CostType::Jc => "JC cost",
            CostType::Iv => "IV cost",
            CostType::Sm => "SM cost",
        }
    }

    /// The cost type of a (trimmed) Transaction_Type, or None for a type that is not a cost.
    /// Exact: Sage writes these in one spelling.
    #[inline]
    pub fn parse(ty: &str) -> Option<CostType> {
        CostType::ALL.into_iter().find(|c| c.as_str() == ty)
    }

    /// The direct cost this type's lines group into.
    #[inline]
    pub const fn direct_cost_kind(self) -> DirectCostKind {
        match self {
            CostType::Ap => DirectCostKind::Invoice,
            CostType::Pr => DirectCostKind::Payroll,
            _ => DirectCostKind::Expense,
        }
    }
}

/// Transaction types that are actual costs, as Sage writes them.
pub const COST_TRANSACTION_TYPES: [&str; 6] = {
    let mut names = [""; 6];
    let mut i = 0;
    while i < 6 {
        names[i] = CostType::ALL[i].as_str();
        i += 1;
    }
    names
};

/// True for a Transaction_Type that is a cost (the one cost-type filter).
#[inline]
pub fn is_cost_type(ty: &str) -> bool {
    CostType::parse(ty).is_some()
}

/// True for an AP cost: the only type whose lines come from an AP invoice.
#[inline]
pub fn is_ap_cost(ty: &str) -> bool {
    ty == CostType::Ap.as_str()
}

/// Count one row under its Transaction_Type, allocating the key only for a type not seen yet
/// (the filter counts of the reader, of the typing step and of the project stage).
pub fn count_type(counts: &mut BTreeMap<String, u64>, ty: &str) {
    match counts.get_mut(ty) {
        Some(n) => *n += 1,
        None => {
            counts.insert(ty.to_string(), 1);
        }
    }
}

/// Procore's `direct_cost_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectCostKind {
    Invoice,
    Payroll,
    Expense,
}

impl DirectCostKind {
    /// The direct cost a row of Transaction_Type `ty` belongs to: AP cost → invoice, PR cost →
    /// payroll, every other type → expense. The one grouping rule.
    #[inline]
    pub fn of(ty: &str) -> DirectCostKind {
        // Two comparisons on the hot path (every row's origin id), not a scan of every type.
        const AP: &str = CostType::Ap.as_str();
        const PR: &str = CostType::Pr.as_str();
        match ty {
            AP => DirectCostKind::Invoice,
            PR => DirectCostKind::Payroll,
            _ => DirectCostKind::Expense,
        }
    }

    /// The Procore enum value.
    #[inline]
    pub fn as_str(self) -> &'static str {
        match self {
            DirectCostKind::Invoice => "invoice",
            DirectCostKind::Payroll => "payroll",
            DirectCostKind::Expense => "expense",
        }
    }

    /// Group parts of a direct cost of this kind: invoice (vendor, invoice), payroll (date,
    /// batch), expense (type, date, batch).
    #[inline]
    pub const fn parts(self) -> usize {
        match self {
            DirectCostKind::Invoice | DirectCostKind::Payroll => 2,
            DirectCostKind::Expense => 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cost_type_parses_back_and_groups_as_domain_md_says() {
        for c in CostType::ALL {
            assert_eq!(CostType::parse(c.as_str()), Some(c));
        }
        assert_eq!(
            COST_TRANSACTION_TYPES,
            ["AP cost", "PR cost", "EQ cost", "JC cost", "IV cost", "SM cost"]
        );
        assert_eq!(DirectCostKind::of("AP cost"), DirectCostKind::Invoice);
        assert_eq!(DirectCostKind::of("PR cost"), DirectCostKind::Payroll);
        assert_eq!(DirectCostKind::of("EQ cost"), DirectCostKind::Expense);
        // Not trimmed here: ingest trims; a padded type is not an AP cost.
        assert_eq!(DirectCostKind::of("AP cost "), DirectCostKind::Expense);
        assert!(!is_cost_type("AP commitment"));
        assert!(is_ap_cost("AP cost") && !is_ap_cost("ap cost"));
    }
}
