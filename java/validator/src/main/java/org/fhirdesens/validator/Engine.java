package org.fhirdesens.validator;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.parser.DataFormatException;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.CodeSystem;
import org.hl7.fhir.r4.model.OperationOutcome;
import org.hl7.fhir.r4.model.OperationOutcome.IssueSeverity;
import org.hl7.fhir.r4.model.OperationOutcome.IssueType;
import org.hl7.fhir.r4.model.StructureDefinition;
import org.hl7.fhir.r4.model.ValueSet;
import org.hl7.fhir.utilities.npm.NpmPackage;

/**
 * HAPI's FhirInstanceValidator (the HL7 InstanceValidator) over a support chain that works offline:
 * our guide's conformance resources, R4 core, UCUM/BCP-47/ISO codes, code systems that carry their
 * content, snapshots for differential-only profiles, and unknown code systems (SNOMED, RxNorm)
 * reported as warnings since no terminology server is reachable.
 */
final class Engine {
  private final FhirContext context;
  private final FhirValidator validator;
  private int guideResources;

  Engine(FhirContext context, Iterable<Path> packages) throws IOException {
    this.context = context;
    PrePopulatedValidationSupport guide = new PrePopulatedValidationSupport(context);
    for (Path file : packages) {
      guideResources += loadPackage(file, guide);
    }
    UnknownCodeSystemWarningValidationSupport unknownSystems =
        new UnknownCodeSystemWarningValidationSupport(context);
    unknownSystems.setNonExistentCodeSystemSeverity(
        ca.uhn.fhir.context.support.IValidationSupport.IssueSeverity.WARNING);
    ValidationSupportChain chain = new ValidationSupportChain(
        guide,
        new DefaultProfileValidationSupport(context),
        new CommonCodeSystemsTerminologyService(context),
        new InMemoryTerminologyServerValidationSupport(context),
        new SnapshotGeneratingValidationSupport(context),
        unknownSystems);
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    module.setAnyExtensionsAllowed(true);
    validator = context.newValidator().registerValidatorModule(module);
  }

  /** Loads the StructureDefinitions, CodeSystems and ValueSets of one FHIR package (.tgz). */
  private int loadPackage(Path file, PrePopulatedValidationSupport guide) throws IOException {
    NpmPackage npm;
    try (InputStream in = Files.newInputStream(file)) {
      npm = NpmPackage.fromPackage(in);
    }
    NpmPackage.NpmPackageFolder folder = npm.getFolders().get("package");
    if (folder == null) {
      throw new IOException(file + " is not a FHIR package (no package/ folder)");
    }
    IParser parser = context.newJsonParser();
    int count = 0;
    for (Map.Entry<String, byte[]> member : folder.getContent().entrySet()) {
      String name = member.getKey();
      if (!name.toLowerCase(Locale.ROOT).endsWith(".json") || name.startsWith(".")
          || name.equals("package.json")) {
        continue;
      }
      IBaseResource resource;
      try {
        resource = parser.parseResource(new String(member.getValue(), StandardCharsets.UTF_8));
      } catch (DataFormatException notAResource) {
        continue;
      }
      if (resource instanceof StructureDefinition sd) {
        guide.addStructureDefinition(sd);
      } else if (resource instanceof CodeSystem cs) {
        guide.addCodeSystem(cs);
      } else if (resource instanceof ValueSet vs) {
        guide.addValueSet(vs);
      } else {
        continue;
      }
      count++;
    }
    return count;
  }

  /** One validation first, so the first caller does not pay for loading R4 core and UCUM. */
  void warmUp() {
    validateJson("{\"resourceType\":\"Patient\",\"gender\":\"female\"}");
    System.err.println("validator ready: " + guideResources + " conformance resource(s) from packages");
  }

  /** One resource (JSON text) in, an OperationOutcome (JSON text) out. */
  String validateJson(String resourceJson) {
    OperationOutcome outcome = new OperationOutcome();
    ValidationResult result;
    try {
      result = validator.validateWithResult(resourceJson);
    } catch (DataFormatException error) {
      outcome.addIssue()
          .setSeverity(IssueSeverity.FATAL)
          .setCode(IssueType.STRUCTURE)
          .setDiagnostics(error.getMessage());
      return context.newJsonParser().encodeResourceToString(outcome);
    }
    for (SingleValidationMessage message : result.getMessages()) {
      OperationOutcome.OperationOutcomeIssueComponent issue = outcome.addIssue()
          .setSeverity(IssueSeverity.fromCode(message.getSeverity().getCode()))
          .setCode(IssueType.PROCESSING)
          .setDiagnostics(message.getMessageId());
      issue.getDetails().setText(message.getMessage());
      if (message.getLocationString() != null) {
        issue.addExpression(message.getLocationString());
      }
    }
    return context.newJsonParser().encodeResourceToString(outcome);
  }
}
