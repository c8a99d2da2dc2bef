"""What a clinician reads about a record and an analysis: the clinical basics measured on the ECG
(`ecglens.reports.basics`), the patient fields of the header (`ecglens.reports.patient`) and the one
plain-language account of an analysis (`ecglens.reports.summary`) that the page, the PDF report
(`ecglens.reports.pdf`) and the FHIR Observation (`ecglens.reports.fhir`) all render."""
