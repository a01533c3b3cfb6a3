document.getElementById("root")!.textContent = "dashboard";
