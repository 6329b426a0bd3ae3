//! The old paths of renamed and moved items (CHANGELOG, "Changed (renames a
//! user must act on)") still compile, with a deprecation warning, and name
//! the same items as the new paths, so that users can move at their pace.
#![allow(deprecated)]

#[test]
fn old_paths_name_the_new_items() {
    let _: fn(envid::LoadError) -> envid::Error = |e| e;
    let _: fn(envid::error::Error) -> envid::error::LoadError = |e| e;
    let _: fn(envid::error::DescriptorError) -> envid::descriptor::DescriptorError = |e| e;
    let _: fn(envid::error::Problem) -> envid::descriptor::Problem = |e| e;
    let _: fn(envid::error::RulesError) -> envid::rules::RulesError = |e| e;

    // Enum variants and associated functions work through the old paths.
    assert_eq!(envid::model::EnvType::Prod, envid::EnvType::Prod);
    assert_eq!(
        envid::model::EnvType::of_env("prd"),
        envid::env_type::EnvType::Prod
    );
    let kind = envid::descriptor::ProblemKind::NotFound;
    assert!(matches!(kind, envid::error::ProblemKind::NotFound));
    assert_eq!(
        envid::error::RulesErrorKind::Io,
        envid::rules::RulesErrorKind::Io
    );
    assert_eq!(
        envid::error::Location::at("a\nb", 2),
        envid::location::Location { line: 2, column: 1 }
    );
    assert_eq!(
        envid::error::LineIndex::new("a\nb").at(2),
        envid::location::Location { line: 2, column: 1 }
    );
}
