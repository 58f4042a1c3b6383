"""DataValidationGate: stops the run before training when the data is not fit to train on.

``pipeline.pipeline`` runs it after ExampleValidator and makes Transform wait for it. The
checks are ``data.validation``'s: schema anomalies in any split, and too many rejected rating
rows.
"""

import json
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies, Examples

from data import ingest
from data.validation import DataValidationError, check_examples, describe_anomalies


@component
def DataValidationGate(
    examples: InputArtifact[Examples],
    anomalies: InputArtifact[ExampleAnomalies],
    max_reject_fraction: Parameter[float],
):
    """Fails the run, naming every problem, when the examples are not fit to train on.

    Args:
      examples: ExampleGen's rating examples (their custom properties count the rows).
      anomalies: ExampleValidator's output for the same examples.
      max_reject_fraction: see ``data.validation.check_examples``.

    Raises:
      DataValidationError: listing the anomalies and the reject rate; the rejected rows are
        in ``<examples uri>/rejects.csv``.
    """
    properties = {
        key: examples.get_int_custom_property(key)
        for key in examples.mlmd_artifact.custom_properties
        if examples.mlmd_artifact.custom_properties[key].HasField("int_value")
    }
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    problems = describe_anomalies(anomalies.uri, splits)
    problems += check_examples(properties, max_reject_fraction)
    if problems:
        dataset = examples.get_string_custom_property("dataset") or "{}"
        raise DataValidationError(
            f"the examples of dataset {json.loads(dataset).get('name', '?')} failed "
            f"validation; nothing was trained or pushed:\n  "
            + "\n  ".join(problems)
            + f"\nrejected rows: {os.path.join(examples.uri, ingest.REJECTS_FILE)}"
        )
