//! placeholder: see the task.
