package org.fhirdesens.crapply;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.parser.IParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.Bundle;
import org.hl7.fhir.r4.model.PlanDefinition;
import org.opencds.cqf.fhir.cr.plandefinition.PlanDefinitionProcessor;
import org.opencds.cqf.fhir.utility.monad.Eithers;
import org.opencds.cqf.fhir.utility.repository.InMemoryFhirRepository;

/**
 * The Clinical Reasoning {@code PlanDefinition/$apply} (R4) as a command, for comparison with ours.
 *
 * <pre>
 *   java -cp "fhir-desens-cr-apply.jar:lib/*" org.fhirdesens.crapply.ReferenceApply BUNDLE.json PLAN_URL Patient/ID
 * </pre>
 *
 * <p>BUNDLE.json holds the PlanDefinition (found by its canonical url), its ActivityDefinitions and the
 * Patient. The result (a CarePlan whose contained RequestGroup and requests are what $apply made) is
 * printed as JSON on stdout; errors go to stderr with exit status 1.
 */
public final class ReferenceApply {
  private ReferenceApply() {}

  public static void main(String[] args) throws IOException {
    if (args.length != 3) {
      System.err.println("usage: ReferenceApply BUNDLE.json PLAN_DEFINITION_URL Patient/ID");
      System.exit(2);
    }
    FhirContext context = FhirContext.forR4Cached();
    IParser parser = context.newJsonParser();
    Bundle bundle = parser.parseResource(Bundle.class, Files.readString(Path.of(args[0]), StandardCharsets.UTF_8));
    PlanDefinition plan = bundle.getEntry().stream()
        .map(Bundle.BundleEntryComponent::getResource)
        .filter(PlanDefinition.class::isInstance)
        .map(PlanDefinition.class::cast)
        .filter(p -> args[1].equals(p.getUrl()))
        .findFirst()
        .orElseThrow(() -> new IllegalArgumentException("no PlanDefinition " + args[1] + " in the bundle"));
    try {
      PlanDefinitionProcessor processor = new PlanDefinitionProcessor(new InMemoryFhirRepository(context, bundle));
      IBaseResource result = processor.apply(
          Eithers.forRight3(plan), args[2], null, null, null, null, null, null, null, null);
      System.out.println(parser.setPrettyPrint(false).encodeResourceToString(result));
    } catch (RuntimeException error) {
      System.err.println("$apply failed: " + error);
      System.exit(1);
    }
  }
}
