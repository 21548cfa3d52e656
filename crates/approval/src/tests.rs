use proptest::prelude::*;

use super::*;

fn request(user: Option<&str>) -> Request {
    Request {
        tenant: "acme".into(),
        agent: "bot".into(),
        user: user.map(str::to_owned),
        task: None,
        upstream: "mail".into(),
        tool: "send".into(),
        tool_digest: "d".into(),
        arguments: r#"{"to":"x@example.com"}"#.into(),
        arguments_sha256: "h".into(),
        policy_version: "v".into(),
        policies: vec!["p".into()],
        reasons: vec![],
        risk: 0,
        rationale: Some("the customer asked".into()),
        side_effects: "persistent".into(),
    }
}

fn approver(name: &str) -> Reviewer {
    Reviewer {
        name: name.into(),
        is_approver: true,
        tenant: "acme".into(),
        groups: Vec::new(),
    }
}

fn in_groups(name: &str, groups: &[&str]) -> Reviewer {
    Reviewer {
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ..approver(name)
    }
}

#[test]
fn thresholds_need_an_approver_from_each_named_group() {
    let mut a = Approval::new("g1".into(), request(None), Required::Dual, 100, 900)
        .with_groups(vec!["finance".into(), "security".into()]);
    assert_eq!(a.missing_groups(), ["finance", "security"]);
    // Two approvals, neither from security: still pending.
    assert_eq!(
        a.review(&in_groups("ann", &["finance"]), Verdict::Approve, None, 101),
        Ok(State::Pending)
    );
    assert_eq!(
        a.review(&in_groups("bob", &["sales"]), Verdict::Approve, None, 102),
        Ok(State::Pending)
    );
    assert_eq!(a.missing_groups(), ["security"]);
    assert!(a.claim_execution(103).is_err());
    assert_eq!(
        a.review(
            &in_groups("sam", &["security"]),
            Verdict::Approve,
            None,
            104
        ),
        Ok(State::Approved)
    );
    assert_eq!(a.reviews[2].groups, ["security"]);
    // One person in both groups covers both, but dual still needs two.
    let mut b = Approval::new("g2".into(), request(None), Required::Dual, 100, 900)
        .with_groups(vec!["finance".into(), "security".into()]);
    assert_eq!(
        b.review(
            &in_groups("ann", &["finance", "security"]),
            Verdict::Approve,
            None,
            101
        ),
        Ok(State::Pending)
    );
    assert_eq!(
        b.review(&approver("bob"), Verdict::Approve, None, 102),
        Ok(State::Approved)
    );
    // A denial from any approver ends it, whatever the groups.
    let mut c = Approval::new("g3".into(), request(None), Required::Required, 100, 900)
        .with_groups(vec!["finance".into()]);
    assert_eq!(
        c.review(&approver("bob"), Verdict::Deny, Some("no".into()), 101),
        Ok(State::Denied)
    );
}

#[test]
fn one_approval_then_one_execution() {
    let mut a = Approval::new("a1".into(), request(None), Required::Required, 100, 900);
    assert_eq!(
        a.review(&approver("ann"), Verdict::Approve, None, 110),
        Ok(State::Approved)
    );
    assert_eq!(a.claim_execution(120), Ok(()));
    assert!(matches!(
        a.claim_execution(121),
        Err(ApprovalError::NotApproved(_, State::Executed))
    ));
    assert_eq!(a.executed_at, Some(120));
}

#[test]
fn dual_needs_two_distinct_approvers() {
    let mut a = Approval::new(
        "a2".into(),
        request(Some("carol")),
        Required::Dual,
        100,
        900,
    );
    assert_eq!(
        a.review(&approver("carol"), Verdict::Approve, None, 101),
        Ok(State::Pending),
        "the delegating user may be one of two"
    );
    assert_eq!(
        a.review(&approver("carol"), Verdict::Approve, None, 102),
        Err(ApprovalError::AlreadyReviewed("carol".into()))
    );
    assert!(a.claim_execution(103).is_err(), "not yet approved");
    assert_eq!(
        a.review(&approver("dave"), Verdict::Approve, None, 104),
        Ok(State::Approved)
    );
}

#[test]
fn the_delegating_user_never_approves_alone_and_others_may_not_review() {
    let mut a = Approval::new(
        "a3".into(),
        request(Some("carol")),
        Required::Required,
        100,
        900,
    );
    assert_eq!(
        a.review(&approver("carol"), Verdict::Approve, None, 101),
        Err(ApprovalError::SelfApproval("carol".into()))
    );
    let member = Reviewer {
        is_approver: false,
        ..approver("eve")
    };
    assert!(matches!(
        a.review(&member, Verdict::Approve, None, 101),
        Err(ApprovalError::NotAnApprover(..))
    ));
    let foreign = Reviewer {
        tenant: "globex".into(),
        ..approver("gus")
    };
    assert!(matches!(
        a.review(&foreign, Verdict::Approve, None, 101),
        Err(ApprovalError::NotAnApprover(..))
    ));
    assert_eq!(a.state, State::Pending);
    assert!(a.reviews.is_empty(), "refusals change nothing");
}

#[test]
fn denial_and_expiry_end_it() {
    let mut a = Approval::new("a4".into(), request(None), Required::Dual, 100, 900);
    a.review(&approver("ann"), Verdict::Approve, None, 101)
        .unwrap();
    assert_eq!(
        a.review(&approver("bob"), Verdict::Deny, Some("no".into()), 102),
        Ok(State::Denied)
    );
    assert!(
        a.review(&approver("cy"), Verdict::Approve, None, 103)
            .is_err()
    );
    let mut b = Approval::new("a5".into(), request(None), Required::Required, 100, 900);
    b.review(&approver("ann"), Verdict::Approve, None, 101)
        .unwrap();
    assert_eq!(
        b.claim_execution(1000),
        Err(ApprovalError::Expired("a5".into()))
    );
    assert_eq!(b.state, State::Expired);
    let mut c = Approval::new("a6".into(), request(None), Required::Required, 100, 900);
    assert_eq!(
        c.review(&approver("ann"), Verdict::Approve, None, 1000),
        Err(ApprovalError::Expired("a6".into()))
    );
}

#[derive(Debug, Clone)]
enum Op {
    Review(usize, bool, u64),
    Execute(u64),
    Cancel,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..5, any::<bool>(), 0u64..1200).prop_map(|(r, ok, t)| Op::Review(r, ok, t)),
        (0u64..1200).prop_map(Op::Execute),
        Just(Op::Cancel),
    ]
}

const PEOPLE: [&str; 5] = ["ann", "bob", "carol", "dave", "eve"];

proptest! {
    /// Whatever happens, it executes at most once, only before its expiry,
    /// and only after as many distinct approving approvers as it needs,
    /// with no denial; the delegating user never suffices alone.
    #[test]
    fn no_sequence_of_events_breaks_the_rules(dual in any::<bool>(), ops in proptest::collection::vec(op(), 0..30)) {
        let required = if dual { Required::Dual } else { Required::Required };
        let groups = if dual { vec!["finance".to_owned()] } else { Vec::new() };
        let mut a = Approval::new("p".into(), request(Some("carol")), required, 100, 900)
            .with_groups(groups);
        let mut executions = 0;
        for o in ops {
            let before = a.clone();
            let result = match o {
                Op::Review(i, ok, t) => {
                    // "eve" is no approver.
                    // "dave" is in finance.
                    let who = Reviewer {
                        is_approver: i != 4,
                        groups: if i == 3 { vec!["finance".into()] } else { Vec::new() },
                        ..approver(PEOPLE[i])
                    };
                    let verdict = if ok { Verdict::Approve } else { Verdict::Deny };
                    a.review(&who, verdict, None, 100 + t).map(|_| ())
                }
                Op::Execute(t) => {
                    let r = a.claim_execution(100 + t);
                    if r.is_ok() {
                        executions += 1;
                        prop_assert!(100 + t < a.expires_at);
                    }
                    r
                }
                Op::Cancel => a.cancel(),
            };
            if result.is_err() && a.state != State::Expired {
                prop_assert_eq!(&a, &before, "a refused transition changed nothing");
            }
            prop_assert!(a.revision >= before.revision);
        }
        prop_assert!(executions <= 1);
        if executions == 1 {
            let approvers: Vec<&str> = a.reviews.iter()
                .filter(|r| r.verdict == Verdict::Approve)
                .map(|r| r.reviewer.as_str())
                .collect();
            let mut distinct = approvers.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), approvers.len());
            prop_assert!(approvers.len() >= a.needed());
            prop_assert!(!approvers.contains(&"eve"));
            prop_assert!(approvers.iter().any(|r| *r != "carol"), "not the delegating user alone");
            prop_assert!(a.reviews.iter().all(|r| r.verdict == Verdict::Approve));
            if dual {
                prop_assert!(approvers.contains(&"dave"), "an approver from finance");
            }
        }
    }
}
